"""Demo accounts for `make run`, and the guard that keeps them out of production."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured

from .models import Subscription
from .roles import UserType

DEMO_PASSWORD = "demo"
DEMO_COMPANY = "47"
#: Dashboard username -> IPS user type in the demo company.
DEMO_USERS = {t.value.lower(): t.value for t in UserType}
DEMO_SUPERUSER = "admin"


def demo_accounts_with_demo_password() -> list[str]:
    User = get_user_model()
    names = [*DEMO_USERS, DEMO_SUPERUSER]
    return sorted(
        u.username for u in User.objects.filter(username__in=names, is_active=True) if u.check_password(DEMO_PASSWORD)
    )


def refuse_demo_passwords() -> None:
    """With DEBUG off, refuse to serve while a demo account still has its demo password."""
    if settings.DEBUG:
        return
    found = demo_accounts_with_demo_password()
    if found:
        raise ImproperlyConfigured(
            f"Demo accounts still have the password {DEMO_PASSWORD!r}: {', '.join(found)}. "
            "Change or deactivate them before running with DEBUG off."
        )


#: `make run`'s demo subscription (issue 19): this account hears of errors and missed runs in the demo company,
#: by email (the console backend prints it). The demo job that ends with errors there: "<b>Bold</b> Upload".
DEMO_SUBSCRIBER = "ipsadmin"


def subscribe_demo_account(company) -> None:
    """Subscribe DEMO_SUBSCRIBER to errors and missed runs in ``company`` by email, once (load_demo runs often)."""
    user = get_user_model().objects.get(username=DEMO_SUBSCRIBER)
    if not user.email:
        user.email = f"{DEMO_SUBSCRIBER}@example.com"
        user.save(update_fields=["email"])
    Subscription.objects.update_or_create(
        user=user, scope=Subscription.Scope.COMPANY, company=company, channel=Subscription.Channel.EMAIL,
        defaults={"on_errors": True, "on_missed": True, "paused": False},
    )
