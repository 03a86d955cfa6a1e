from django.core.management.base import BaseCommand

from jobs.services import people
from jobs.models import Connection


class Command(BaseCommand):
    help = "Read again from IPS the companies and user types of everyone who signs in with IPS (now, once)."

    def handle(self, *args, **options):
        for connection in Connection.objects.filter(ips_sign_in=True):
            count, why = people.refresh_ips_memberships(connection)
            self.stdout.write(why or f"{connection}: {count} {'person' if count == 1 else 'people'} refreshed from IPS.")
