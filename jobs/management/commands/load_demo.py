import datetime as dt

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from jobs import demo, ips, ipsversions
from jobs.services import connections, people, sync
from jobs.models import Company, Connection, MembershipChange


class Command(BaseCommand):
    help = "Create the demo connection to the local IPS emulator, its companies, and one user per IPS user type."

    def add_arguments(self, parser):
        parser.add_argument(
            "--service-url",
            default="http://127.0.0.1:8081/scene7/services/IpsApiService",
            help="The emulator's IpsApiService address.",
        )
        parser.add_argument("--service-user", default="service@example.com")
        parser.add_argument(
            "--api-version",
            default=ipsversions.DEFAULT_VERSION,
            choices=[v.key for v in ipsversions.VERSIONS],
            help="The IPS API namespace to speak ('' for the unversioned one).",
        )
        parser.add_argument("--no-sync", action="store_true", help="Do not fetch the jobs from IPS.")

    def handle(self, *args, service_url, service_user, api_version, no_sync, **options):
        if not settings.DEBUG:
            raise CommandError("Demo accounts have the password 'demo': load_demo runs only with DEBUG on.")
        connection, _ = Connection.objects.update_or_create(
            name="Local IPS emulator",
            defaults={
                "region": Connection.Region.CUSTOM,
                "service_url": service_url,
                "username": service_user,
                "api_version": api_version,
                "ips_sign_in": True,  # the emulator's people log in with <type>@example.com / demo
                # A job added in the emulator shows on the jobs page within a minute.
                "sync_interval": dt.timedelta(seconds=30),
            },
        )
        connection.set_password(demo.DEMO_PASSWORD)
        connection.save()
        try:
            listed = connections.service_account_companies(connection)
        except ips.IpsError as error:
            raise CommandError(f"Cannot read the companies from the emulator at {service_url}: {error}") from None
        with transaction.atomic():
            companies = {}
            for handle, name, _role, _known in listed:
                company, _ = Company.objects.update_or_create(
                    connection=connection, handle=handle, defaults={"name": name}
                )
                companies[company.handle] = company
            if demo.DEMO_COMPANY not in companies:
                raise CommandError(f"The emulator's service account is not a member of company {demo.DEMO_COMPANY}.")
            User = get_user_model()
            for username, role in demo.DEMO_USERS.items():
                user, _ = User.objects.update_or_create(username=username, defaults={"is_active": True})
                user.set_password(demo.DEMO_PASSWORD)
                user.save()
                people.change_membership(
                    None, user, companies[demo.DEMO_COMPANY], role, MembershipChange.Source.DEMO
                )
            admin, _ = User.objects.update_or_create(
                username=demo.DEMO_SUPERUSER, defaults={"is_staff": True, "is_superuser": True, "is_active": True}
            )
            admin.set_password(demo.DEMO_PASSWORD)
            admin.save()
            demo.subscribe_demo_account(companies[demo.DEMO_COMPANY])
        self.stdout.write(f"Demo data: {len(companies)} companies, {len(demo.DEMO_USERS) + 1} users.")
        if not no_sync:
            for result in sync.sync_companies(companies.values()):
                self.stdout.write(str(result))
