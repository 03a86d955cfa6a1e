from django.core.management.base import BaseCommand

from jobs.services import press


class Command(BaseCommand):
    help = "Mark runs left 'sending' by a process that died mid-call as 'interrupted'."

    def handle(self, *args, **options):
        count = press.reconcile_stale()
        self.stdout.write(f"{count} stale execution{'s' if count != 1 else ''} marked interrupted.")
