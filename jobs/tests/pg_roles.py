"""The PostgreSQL roles of docs/deploy.md, for tests: SQL (and ORM code) run as the app's role.

``app_role`` is a role made for the test with exactly the grants docs/deploy.md
gives ``ipsadmin_app`` after migrate (read from the file by
scripts/pg_deploy_recipe.py, so the two cannot drift), run by the test
database's owner as the recipe runs them as ``ipsadmin_owner``. Never GRANT ALL:
``careless_role`` is that mistake (TRIGGER, TRUNCATE, REFERENCES), for the tests
that show what the check and the guard do about it.

Roles are made inside the test's transaction, with a random name: the rollback
at the end of the test drops them, and parallel runs on one server never meet.
"""

from __future__ import annotations

import contextlib
import importlib.util
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from django.db import connection, transaction

from .conftest import database_url_for_subprocess

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pg_deploy_recipe.py"
_spec = importlib.util.spec_from_file_location("pg_deploy_recipe", _SCRIPT)
deploy_recipe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy_recipe)


class Role:
    """A database role of the test: ``run(sql)`` as it, or ``with role.acting():`` for ORM code."""

    def __init__(self, name: str):
        self.name = name

    @contextlib.contextmanager
    def acting(self):
        # In a savepoint: an error rolls the SET ROLE back with it.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {self.name}")
            yield cursor
            cursor.execute("RESET ROLE")

    def run(self, sql, params=()):
        with self.acting() as cursor:
            cursor.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else None


def _new_role(prefix: str) -> str:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: its roles and privileges exist only there")
    name = f"{prefix}_{secrets.token_hex(4)}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} NOLOGIN")
    return name


@pytest.fixture
def app_role(db):
    """The app's role of docs/deploy.md, with the grants it documents and nothing else."""
    name = _new_role("ipsadmin_app")
    grants = deploy_recipe.named(deploy_recipe.recipe()["after_migrate"], {"ipsadmin_app": name, "…": ""})
    with connection.cursor() as cursor:
        for statement in grants:
            cursor.execute(statement)
    return Role(name)


@pytest.fixture
def careless_role(db):
    """A role given every privilege on the tables (GRANT ALL): what docs/deploy.md says never to do."""
    name = _new_role("ipsadmin_careless")
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {name}")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}")
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {name}")
    return Role(name)


@pytest.fixture
def table_owner(db):
    """A role that owns the append-only tables, as ipsadmin_owner does (in this test's transaction only)."""
    name = _new_role("ipsadmin_owner")
    with connection.cursor() as cursor:
        for table in ("jobs_execution", "jobs_historyexport", "jobs_membershipchange"):
            cursor.execute(f"ALTER TABLE {table} OWNER TO {name}")
    return Role(name)


@pytest.fixture
def app_database_url(db):
    """A DATABASE_URL for a process the test starts, as the app's role of docs/deploy.md.

    On PostgreSQL a LOGIN role with the recipe's grants, committed (another session
    must see it) by a connection of its own, and dropped after the test; on SQLite
    the test database's own URL (it has no roles)."""
    url = database_url_for_subprocess()
    if connection.vendor != "postgresql":
        yield url
        return
    s = connection.settings_dict
    name, password = f"ipsadmin_app_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    grants = deploy_recipe.named(deploy_recipe.recipe()["after_migrate"], {"ipsadmin_app": name, "…": ""})

    def superuser():
        return psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
                               password=s["PASSWORD"] or None, dbname=s["NAME"], autocommit=True)

    with superuser() as su:
        su.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        for statement in grants:
            su.execute(statement)
    try:
        u = urlsplit(url)
        yield urlunsplit(u._replace(netloc=f"{quote(name)}:{quote(password)}@{u.hostname}:{u.port or 5432}"))
    finally:
        with superuser() as su:
            su.execute(f"DROP OWNED BY {name}")  # its grants in this database
            su.execute(f"DROP ROLE {name}")
