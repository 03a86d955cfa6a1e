from django.core.management.base import BaseCommand

from jobs.services import chores


class Command(BaseCommand):
    help = (
        "(Re)start the recurring background tasks (the refresh of memberships read from IPS), "
        "replacing any chain already running. Run once after deploying; `make run` does."
    )

    def handle(self, *args, **options):
        for name in chores.NAMES:
            chores.start_chore(name)
            self.stdout.write(f"{name}: started.")
