from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from jobs import crypto
from jobs.models import Connection, Subscription


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (IPS passwords; notification URLs and webhook secrets) with the first "
        "key of IPSADMIN_ENCRYPTION_KEY. Rotate by putting the new key first (new,old), running this, then "
        "dropping the old key."
    )

    def handle(self, *args, **options):
        rotated = subscriptions = 0
        with transaction.atomic():
            for connection in Connection.objects.select_for_update().exclude(password_encrypted=""):
                try:
                    connection.password_encrypted = crypto.rotate(connection.password_encrypted)
                except ImproperlyConfigured as error:
                    raise CommandError(f"connection “{connection}”: {error} Nothing was changed.") from None
                connection.save(update_fields=["password_encrypted"])
                rotated += 1
            # Webhook, Slack and Teams URLs carry their own secrets; webhook signing secrets too.
            for subscription in Subscription.objects.select_for_update().exclude(target_encrypted="",
                                                                                secret_encrypted=""):
                try:
                    for field in ("target_encrypted", "secret_encrypted"):
                        if getattr(subscription, field):
                            setattr(subscription, field, crypto.rotate(getattr(subscription, field)))
                except ImproperlyConfigured as error:
                    raise CommandError(f"subscription {subscription.pk}: {error} Nothing was changed.") from None
                subscription.save(update_fields=["target_encrypted", "secret_encrypted"])
                subscriptions += 1
        self.stdout.write(f"{rotated} IPS password{'s' if rotated != 1 else ''} re-encrypted with the first key.")
        self.stdout.write(f"{subscriptions} notification target{'s' if subscriptions != 1 else ''} "
                          "re-encrypted with the first key.")
