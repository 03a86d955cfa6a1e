"""Checks that keep a misconfigured ipsadmin from serving."""

import os

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

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


#: IPS_SOAP_VERSION's values: "" (the WSDL's SOAP 1.1 binding, the reference's wire) or "1.2".
SOAP_VERSIONS = ("", "1.2")


@checks.register()
def ips_soap_version_check(app_configs=None, **kwargs):
    """At startup: a misspelt IPS_SOAP_VERSION would otherwise surface only at the first IPS call."""
    value = settings.IPS_SOAP_VERSION
    if value in SOAP_VERSIONS:
        return []
    return [
        checks.Error(
            f"IPS_SOAP_VERSION is {value!r}: it must be empty (the WSDL's SOAP 1.1 binding) or \"1.2\".",
            hint="Set the environment variable IPS_SOAP_VERSION to 1.2, or leave it unset.",
            id="jobs.E010",
        )
    ]


#: What a role that can run the application must not hold on an append-only table:
#: each lets it undo the table's guard (TRIGGER: a trigger of its own; TRUNCATE:
#: no row trigger fires; REFERENCES: a key of its own that blocks or locks rows).
FORBIDDEN_PRIVILEGES = ("TRIGGER", "TRUNCATE", "REFERENCES")
#: The triggers of migration 0015 every append-only table carries.
GUARD_TRIGGERS = ("append_only", "no_delete", "no_truncate")

_WHO_SQL = """
SELECT current_user, r.rolsuper, r.rolcreaterole,
       EXISTS (SELECT FROM pg_roles WHERE rolname = 'ipsadmin_prune')
       AND pg_has_role(current_user, 'ipsadmin_prune', 'MEMBER')
FROM pg_roles AS r WHERE r.rolname = current_user
"""

_ROLE_SQL = """
SELECT t.tablename,
       pg_has_role(current_user, t.tableowner, 'MEMBER'),
       t.tableowner,
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

    It must not own them, nor be a member of a role that owns them, nor be a
    superuser or hold CREATEROLE (either can make it a member of the owner), nor
    hold TRIGGER, TRUNCATE or REFERENCES on them, nor be a member of
    ipsadmin_prune; and their guard triggers must be there, enabled. A check that
    cannot run is an error too (jobs.E007), never a pass. docs/deploy.md gives
    such a role."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        return []
    hint = "Run the application as the role of docs/deploy.md (PostgreSQL roles), not as the one that migrates."
    try:
        # In a savepoint of its own: a failed query leaves the caller's transaction usable.
        with transaction.atomic(using=DEFAULT_DB_ALIAS), connection.cursor() as cursor:
            cursor.execute(_WHO_SQL)
            role, superuser, createrole, prunes = cursor.fetchone()
            cursor.execute(_ROLE_SQL, {"privileges": list(FORBIDDEN_PRIVILEGES), "triggers": list(GUARD_TRIGGERS),
                                       "tables": append_only_tables()})
            tables = cursor.fetchall()
    except DatabaseError as exc:
        # Never a pass: a check that did not run says nothing about the role.
        return [checks.Error(
            f"The database role check could not run: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}.",
            hint=hint + " Run `manage.py check --deploy` again once the database answers, as the app's role.",
            id="jobs.E007")]
    errors = []
    if superuser or createrole:
        errors.append(checks.Error(
            f"The database role {role!r} is "
            + ("a superuser" if superuser else "allowed to create roles (CREATEROLE)")
            + ": it can make itself a member of the tables' owner and drop the triggers that keep them append-only.",
            hint=hint + f" ALTER ROLE {role} NOSUPERUSER NOCREATEROLE;", id="jobs.E006"))
    owned = [(t, owner) for t, owns, owner, _, _ in tables if owns]
    if owned:
        owners = sorted({owner for _, owner in owned})
        errors.append(checks.Error(
            f"The database role {role!r} owns, is a member of the owner ({', '.join(owners)}) of, or is a superuser "
            f"over {', '.join(t for t, _ in owned)}: it can drop the triggers that keep them append-only.",
            hint=hint + "".join(f" REVOKE {o} FROM {role};" for o in owners if o != role), id="jobs.E002"))
    for table, owns, _, held, _ in tables:
        if held and not owns:  # an owner holds them all: said above
            errors.append(checks.Error(
                f"The database role {role!r} holds {', '.join(held)} on {table}: it can undo its append-only guard.",
                hint=hint + f" REVOKE {', '.join(held)} ON {table} FROM {role};", id="jobs.E003"))
    if prunes:
        errors.append(checks.Error(
            f"The database role {role!r} is a member of ipsadmin_prune: it can delete and truncate the audit trail.",
            hint=hint, id="jobs.E004"))
    for table, _, _, _, missing in tables:
        if missing:
            errors.append(checks.Error(
                f"{table} lacks its guard ({', '.join(f'{table}_{g}' for g in missing)} missing or disabled).",
                hint="Run `manage.py migrate`; a trigger someone dropped or disabled is back only so.", id="jobs.E005"))
    return errors


@checks.register(deploy=True)
def site_url_check(app_configs=None, **kwargs):
    """`manage.py check --deploy`: notifications link to runs by SITE_URL; without it, a path alone."""
    if settings.DEBUG or settings.SITE_URL:
        return []
    return [
        checks.Warning(
            "SITE_URL is not set: notification emails and webhooks link to runs by a path alone, "
            "which no mail reader can open.",
            hint="Set SITE_URL to the dashboard's address as its users reach it, e.g. https://ipsadmin.example.com.",
            id="jobs.W001",
        )
    ]


@checks.register(deploy=True)
def metrics_directory_check(app_configs=None, **kwargs):
    """`manage.py check --deploy`: metrics on, several gunicorn workers, no PROMETHEUS_MULTIPROC_DIR (or one the
    settings could not use): each worker counts for itself, and a scrape reads whichever worker answers it."""
    if settings.DEBUG or settings.PROMETHEUS_MULTIPROC_DIR:
        return []
    if not (settings.METRICS_TOKEN or settings.METRICS_ALLOW_NETWORKS):
        return []  # metrics off
    if os.environ.get("GUNICORN_WORKERS", "").strip() == "1":
        return []  # one worker: its counts are the server's
    return [
        checks.Warning(
            "PROMETHEUS_MULTIPROC_DIR is not set (or could not be used): each gunicorn worker, the watcher and "
            "the task workers count for themselves, and /metrics shows only the counts of the worker that "
            "answers the scrape.",
            hint="Set PROMETHEUS_MULTIPROC_DIR=/run/ipsadmin/metrics (deploy/ipsadmin.env.example), a directory "
                 "the app's user can write (the units' RuntimeDirectory=ipsadmin).",
            id="jobs.W002",
        )
    ]
