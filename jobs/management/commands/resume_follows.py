from django.core.management.base import BaseCommand

from jobs.services import follow


class Command(BaseCommand):
    help = "Enqueue again the follow of every accepted run whose IPS result is not known yet (after a queue was lost)."

    def handle(self, *args, **options):
        count = follow.resume_follows()
        self.stdout.write(f"{count} follow{'s' if count != 1 else ''} enqueued again.")
