from django.core.management.base import BaseCommand, CommandError
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from jobs import crypto
from jobs.models import Connection


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored IPS password with the first key of IPSADMIN_ENCRYPTION_KEY. "
        "Rotate by putting the new key first (new,old), running this, then dropping the old key."
    )

    def handle(self, *args, **options):
        rotated = 0
        with transaction.atomic():
            for connection in Connection.objects.select_for_update().exclude(password_encrypted=""):
                try:
                    connection.password_encrypted = crypto.rotate(connection.password_encrypted)
                except ImproperlyConfigured as error:
                    raise CommandError(f"connection “{connection}”: {error} Nothing was changed.") from None
                connection.save(update_fields=["password_encrypted"])
                rotated += 1
        self.stdout.write(f"{rotated} IPS password{'s' if rotated != 1 else ''} re-encrypted with the first key.")
