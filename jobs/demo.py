"""Demo accounts for `make run`, and the guard that keeps them out of production."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured

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
