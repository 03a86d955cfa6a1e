import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from jobs import services
from jobs.models import Execution


class Command(BaseCommand):
    help = "Delete finished executions older than --days (the only way audit rows are ever deleted)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, required=True, help="Keep this many days of history (at least 30).")

    def handle(self, *args, days, **options):
        if days < 30:
            raise CommandError("Keep at least 30 days of history.")
        cutoff = timezone.now() - dt.timedelta(days=days)
        old = Execution.objects.filter(requested_at__lt=cutoff).exclude(outcome=Execution.Outcome.SENDING)
        with transaction.atomic(), services.allow_pruning():
            if connection.vendor == "postgresql":
                # The audit trigger (migration 0002) refuses DELETE unless this
                # transaction says so; SET LOCAL ends with the transaction.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL ipsadmin.allow_prune = 'on'")
            count, _ = old.delete()
        self.stdout.write(f"{count} execution{'s' if count != 1 else ''} older than {days} days deleted.")
