from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = _("IPS jobs")

    def ready(self):
        # Django's idiom: what registers itself is imported once the app is ready.
        from . import checks  # noqa: F401  (the system checks)
        from . import tasks  # noqa: F401  (how jobs/events.py enqueues background work)
