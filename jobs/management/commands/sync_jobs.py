from django.core.management.base import BaseCommand, CommandError

from jobs.services import sync
from jobs.models import Company


class Command(BaseCommand):
    help = "Fetch scheduled jobs from IPS (getScheduledJobs) and upsert them; missing jobs are marked gone."

    def add_arguments(self, parser):
        parser.add_argument("handles", nargs="*", help="Company handles to sync (default: all).")
        parser.add_argument("--connection", help="Only companies of this connection (by name).")

    def handle(self, *args, handles, connection, **options):
        companies = Company.objects.select_related("connection")
        if handles:
            companies = companies.filter(handle__in=handles)
        if connection:
            companies = companies.filter(connection__name=connection)
        if not companies:
            raise CommandError("No company matches.")
        failed = 0
        for result in sync.sync_companies(companies):
            self.stdout.write(str(result))
            failed += bool(result.error)
        if failed:
            raise CommandError(f"{failed} of {len(companies)} companies could not be synced.")
