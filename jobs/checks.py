"""Checks that keep a misconfigured ipsadmin from serving."""

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from . import demo
from .models import IPS_CALLS_PER_RUN, AppendOnly


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


#: What a role that can run the application must not hold on an append-only table:
#: each lets it undo the table's guard (TRIGGER: a trigger of its own; TRUNCATE:
#: no row trigger fires; REFERENCES: a key of its own that blocks or locks rows).
FORBIDDEN_PRIVILEGES = ("TRIGGER", "TRUNCATE", "REFERENCES")
#: The triggers of migration 0015 every append-only table carries.
GUARD_TRIGGERS = ("append_only", "no_delete", "no_truncate")

_ROLE_SQL = """
SELECT t.tablename,
       pg_has_role(current_user, t.tableowner, 'MEMBER'),
       ARRAY(SELECT p FROM unnest(%(privileges)s::text[]) AS p
             WHERE has_table_privilege(current_user, format('%%I.%%I', t.schemaname, t.tablename), p)),
       ARRAY(SELECT g FROM unnest(%(triggers)s::text[]) AS g
             WHERE NOT EXISTS (SELECT FROM pg_trigger AS tg
                               WHERE tg.tgrelid = format('%%I.%%I', t.schemaname, t.tablename)::regclass
                                 AND tg.tgname = t.tablename || '_' || g AND tg.tgenabled IN ('O', 'A')))
FROM pg_tables AS t
WHERE t.schemaname = current_schema() AND t.tablename = ANY(%(tables)s)
ORDER BY t.tablename
"""


def append_only_tables() -> list[str]:
    return sorted(m._meta.db_table for m in apps.get_models() if issubclass(m, AppendOnly))


@checks.register(checks.Tags.security, deploy=True)
def database_role_check(app_configs=None, **kwargs):
    """`manage.py check --deploy` on PostgreSQL: the app's role cannot undo the guard of the append-only tables.

    It must not own them (nor be a superuser), nor hold TRIGGER, TRUNCATE or
    REFERENCES on them, nor be a member of ipsadmin_prune; and their guard
    triggers must be there, enabled. docs/deploy.md gives such a role."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        return []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, pg_has_role(current_user, 'ipsadmin_prune', 'MEMBER')")
            role, prunes = cursor.fetchone()
            cursor.execute(_ROLE_SQL, {"privileges": list(FORBIDDEN_PRIVILEGES), "triggers": list(GUARD_TRIGGERS),
                                       "tables": append_only_tables()})
            tables = cursor.fetchall()
    except DatabaseError:  # no database yet (before migrate), or no ipsadmin_prune: nothing to say
        return []
    hint = "Run the application as the role of docs/deploy.md (PostgreSQL roles), not as the one that migrates."
    errors = []
    owned = [t for t, owns, _, _ in tables if owns]
    if owned:
        errors.append(checks.Error(
            f"The database role {role!r} owns (or is a superuser over) {', '.join(owned)}: "
            "it can drop the triggers that keep them append-only.",
            hint=hint, id="jobs.E002"))
    for table, owns, held, _ in tables:
        if held and not owns:  # an owner holds them all: said above
            errors.append(checks.Error(
                f"The database role {role!r} holds {', '.join(held)} on {table}: it can undo its append-only guard.",
                hint=hint + f" REVOKE {', '.join(held)} ON {table} FROM {role};", id="jobs.E003"))
    if prunes:
        errors.append(checks.Error(
            f"The database role {role!r} is a member of ipsadmin_prune: it can delete and truncate the audit trail.",
            hint=hint, id="jobs.E004"))
    for table, _, _, missing in tables:
        if missing:
            errors.append(checks.Error(
                f"{table} lacks its guard ({', '.join(f'{table}_{g}' for g in missing)} missing or disabled).",
                hint="Run `manage.py migrate`; a trigger someone dropped or disabled is back only so.", id="jobs.E005"))
    return errors
