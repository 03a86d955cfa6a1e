import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from jobs.models import Execution


class Command(BaseCommand):
    help = "Delete finished executions older than --days (the only way audit rows are ever deleted)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, required=True, help="Keep this many days of history (at least 30).")

    def handle(self, *args, days, **options):
        if days < 30:
            raise CommandError("Keep at least 30 days of history.")
        count = Execution.objects.prune(before=timezone.now() - dt.timedelta(days=days))
        self.stdout.write(f"{count} execution{'s' if count != 1 else ''} older than {days} days deleted.")
