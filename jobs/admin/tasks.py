"""The background tasks' results (django-tasks-db's admin), in the page's language.

django-tasks and django-tasks-db ship no Italian: their words are marked here so
that the project's catalogue carries them (gettext finds a msgid in any catalogue),
and their admin is registered again with its own plain-English labels (and app name) translated."""

from django.apps import apps
from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from django_tasks_db.admin import DBTaskResultAdmin
from django_tasks_db.models import DBTaskResult

from .values import ReadableValues

#: Their msgids (django_tasks.base.TaskResultStatus, django_tasks_db.models.DBTaskResult), as they mark them.
THEIR_WORDS = [
    pgettext_lazy("Task", "Ready"), pgettext_lazy("Task", "Running"), pgettext_lazy("Task", "Failed"),
    pgettext_lazy("Task", "Successful"),
    _("Task Result"), _("Task Results"), _("status"), _("enqueued at"), _("started at"), _("finished at"),
    _("args kwargs"), _("priority"), _("task path"), _("worker id"), _("queue name"), _("backend name"),
    _("run after"), _("return value"), _("exception class path"), _("traceback"),
]

# Its app is named in plain English (django_tasks_db.apps): named here, translated, for the admin's index.
apps.get_app_config(DBTaskResult._meta.app_label).verbose_name = _("Background tasks")

admin.site.unregister(DBTaskResult)


@admin.register(DBTaskResult)
class TaskResultAdmin(ReadableValues, DBTaskResultAdmin):
    list_display = ["id", "task", *DBTaskResultAdmin.list_display[2:]]

    @admin.display(description=_("task"))
    def task(self, obj):
        return obj.task_name

    @admin.display(description=_("traceback"))
    def formatted_traceback(self, obj):
        return super().formatted_traceback(obj)

    @admin.display(description=_("run after"))
    def display_run_after(self, obj):
        return super().display_run_after(obj)
