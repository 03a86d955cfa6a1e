from django.core.management.base import BaseCommand

from jobs import services, tasks


class Command(BaseCommand):
    help = (
        "(Re)start the recurring background tasks (the refresh of memberships read from IPS), "
        "replacing any chain already running. Run once after deploying; `make run` does."
    )

    def handle(self, *args, **options):
        for name in tasks.CHORES:
            services.start_chore(name, tasks.schedule_chore)
            self.stdout.write(f"{name}: started.")
