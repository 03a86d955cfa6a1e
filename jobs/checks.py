"""Checks that keep a misconfigured ipsadmin from serving."""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from . import demo
from .models import IPS_CALLS_PER_RUN


def timeout_budget_problem(worker_timeout: float) -> str | None:
    """Why a Run's IPS calls could outlast gunicorn's worker timeout, if they could."""
    per_call = settings.IPS_CONNECT_TIMEOUT + settings.IPS_READ_TIMEOUT
    if IPS_CALLS_PER_RUN * per_call < worker_timeout:
        return None
    return (
        f"A Run makes {IPS_CALLS_PER_RUN} IPS calls of up to {settings.IPS_CONNECT_TIMEOUT:g} s + "
        f"{settings.IPS_READ_TIMEOUT:g} s; they must fit in gunicorn's worker timeout of {worker_timeout:g} s. "
        "Lower IPS_READ_TIMEOUT or raise GUNICORN_TIMEOUT."
    )


def check_before_serving(worker_timeout: float) -> None:
    """Run by gunicorn's master before it forks a worker (ipsadmin/gunicorn.conf.py)."""
    try:
        problem = timeout_budget_problem(worker_timeout)
        if problem:
            raise ImproperlyConfigured(problem)
        demo.refuse_demo_passwords()
    finally:
        # Workers are forked from this process: they must not share its connection.
        connections.close_all()


@checks.register(checks.Tags.security, deploy=True)
def demo_passwords_check(app_configs=None, **kwargs):
    """`manage.py check --deploy`: no demo account may keep its demo password."""
    if settings.DEBUG:
        return []
    try:
        found = demo.demo_accounts_with_demo_password()
    except Exception:  # no database yet (before migrate): nothing to say
        return []
    if not found:
        return []
    return [
        checks.Error(
            f"Demo accounts still have the password {demo.DEMO_PASSWORD!r}: {', '.join(found)}.",
            hint="Change or deactivate them before running with DEBUG off.",
            id="jobs.E001",
        )
    ]
