"""The PostgreSQL role model of docs/deploy.md: the recipe runs as written, and check --deploy holds the app to it.

``manage.py check --deploy`` fails (jobs.E002–E005) when the app's role could undo the
guard of the append-only tables: it owns them (or is a superuser), holds TRIGGER,
TRUNCATE or REFERENCES on them, is a member of ipsadmin_prune, or a guard trigger is
gone. The three tables share one guard: one trigger function with each model's
rules, and foreign keys the database itself sets NULL.
"""

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.apps import apps
from django.conf import settings
from django.core.checks.registry import registry
from django.db import connection

from jobs import checks
from jobs.models import AppendOnly, Execution, HistoryExport, MembershipChange

from .conftest import database_url_for_subprocess
from .pg_roles import Role, app_role, careless_role, deploy_recipe, table_owner  # noqa: F401  (fixtures)

APPEND_ONLY = [Execution, HistoryExport, MembershipChange]


def _ids(role: Role) -> list[str]:
    with role.acting():
        return sorted(e.id for e in checks.database_role_check())


# --- The check --------------------------------------------------------------------------


@pytest.mark.postgres
def test_the_check_passes_as_the_app_role_of_the_recipe(app_role):
    with app_role.acting():
        assert checks.database_role_check() == []


@pytest.mark.postgres
def test_the_check_fails_as_a_superuser(db):
    """The test runner's own role: it can drop every trigger."""
    errors = checks.database_role_check()
    assert [e.id for e in errors][:2] == ["jobs.E006", "jobs.E002"]
    assert "is a superuser" in errors[0].msg and "or is a superuser over" in errors[1].msg


@pytest.mark.postgres
def test_the_check_fails_as_the_owner_of_the_tables(table_owner):
    assert _ids(table_owner) == ["jobs.E002"]


@pytest.mark.postgres
@pytest.mark.parametrize("privilege", ["TRIGGER", "TRUNCATE", "REFERENCES"])
def test_the_check_fails_when_the_app_role_holds_a_privilege_that_undoes_the_guard(app_role, privilege):
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT {privilege} ON jobs_membershipchange TO {app_role.name}")
    with app_role.acting():
        [error] = checks.database_role_check()
    assert error.id == "jobs.E003"
    assert f"holds {privilege} on jobs_membershipchange" in error.msg
    assert f"REVOKE {privilege} ON jobs_membershipchange FROM {app_role.name}" in error.hint


@pytest.mark.postgres
def test_the_check_fails_for_grant_all(careless_role):
    with careless_role.acting():
        errors = checks.database_role_check()
    assert [(e.id, e.msg.split(" on ")[-1].split(":")[0]) for e in errors] == [
        ("jobs.E003", "jobs_execution"), ("jobs.E003", "jobs_historyexport"), ("jobs.E003", "jobs_membershipchange")]
    assert "holds TRIGGER, TRUNCATE, REFERENCES on" in errors[0].msg


@pytest.mark.postgres
def test_the_check_fails_for_a_member_of_the_prune_role(app_role):
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT ipsadmin_prune TO {app_role.name}")
    assert _ids(app_role) == ["jobs.E004"]


@pytest.mark.postgres
def test_the_check_fails_when_a_guard_trigger_is_gone(app_role):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE jobs_historyexport DISABLE TRIGGER jobs_historyexport_append_only")
        cursor.execute("DROP TRIGGER jobs_membershipchange_no_truncate ON jobs_membershipchange")
    with app_role.acting():
        errors = checks.database_role_check()
    assert [(e.id, e.msg.split(" lacks")[0]) for e in errors] == [
        ("jobs.E005", "jobs_historyexport"), ("jobs.E005", "jobs_membershipchange")]


@pytest.mark.postgres
def test_the_check_fails_for_a_role_that_can_create_roles(app_role):
    """CREATEROLE: on PostgreSQL 15 such a role can GRANT the tables' owner TO itself, then drop the triggers."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER ROLE {app_role.name} CREATEROLE")
    with app_role.acting():
        errors = checks.database_role_check()
    assert [e.id for e in errors] == ["jobs.E006"]
    assert "CREATEROLE" in errors[0].msg


@pytest.mark.postgres
def test_the_check_says_superuser_of_a_superuser(db):
    errors = checks.database_role_check()
    assert "jobs.E006" in [e.id for e in errors]
    assert any("superuser" in e.msg and e.id == "jobs.E006" for e in errors)


@pytest.mark.postgres
def test_the_check_fails_for_a_member_of_the_role_that_owns_the_tables(app_role, table_owner):
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT {table_owner.name} TO {app_role.name}")
    with app_role.acting():
        errors = checks.database_role_check()
    assert "jobs.E002" in [e.id for e in errors]
    assert any(table_owner.name in e.msg for e in errors if e.id == "jobs.E002")


@pytest.mark.postgres
def test_the_check_fails_closed_when_it_cannot_run(app_role, monkeypatch):
    """A query the role may not run (or any database error) is an error of its own, never a pass."""
    monkeypatch.setattr(checks, "_ROLE_SQL", "SELECT * FROM no_such_table_of_ipsadmin")
    with app_role.acting():
        errors = checks.database_role_check()
    assert [e.id for e in errors] == ["jobs.E007"]
    assert "could not" in errors[0].msg


def test_the_check_runs_with_check_deploy():
    assert checks.database_role_check in registry.get_checks(include_deployment_checks=True)
    assert checks.database_role_check not in registry.get_checks(include_deployment_checks=False)


def test_the_check_has_nothing_to_say_off_postgresql(db, monkeypatch):
    """SQLite has no roles: the model's guard is all it gets (the tests above, in the PostgreSQL pass)."""
    monkeypatch.setattr(connection, "vendor", "sqlite")
    assert checks.database_role_check() == []


# --- One guard for every append-only table ---------------------------------------------------


def test_every_append_only_model_is_under_the_one_guard():
    found = sorted(m.__name__ for m in apps.get_models() if issubclass(m, AppendOnly))
    assert found == sorted(m.__name__ for m in APPEND_ONLY)
    assert checks.append_only_tables() == sorted(m._meta.db_table for m in APPEND_ONLY)


@pytest.mark.parametrize("model", APPEND_ONLY, ids=lambda m: m.__name__)
def test_the_rules_name_only_columns_of_their_table(model):
    assert model.RULES.columns() <= {f.attname for f in model._meta.concrete_fields}
    assert model._meta.base_manager_name == "objects"


@pytest.mark.postgres
def test_each_table_carries_the_one_function_with_its_models_rules(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname, p.proname, t.tgargs FROM pg_trigger AS t "
            "JOIN pg_class AS c ON c.oid = t.tgrelid JOIN pg_proc AS p ON p.oid = t.tgfoid "
            "WHERE NOT t.tgisinternal AND c.relname = ANY(%s) ORDER BY 1, 2",
            [[m._meta.db_table for m in APPEND_ONLY]],
        )
        triggers = cursor.fetchall()
    expected = sorted((m._meta.db_table, f"{m._meta.db_table}_{g}") for m in APPEND_ONLY for g in checks.GUARD_TRIGGERS)
    assert [(table, name) for table, name, _, _ in triggers] == expected
    assert {function for _, _, function, _ in triggers} == {"ipsadmin_append_only"}
    rules = {m._meta.db_table: json.loads(m.RULES.as_json()) for m in APPEND_ONLY}
    for table, name, _, args in triggers:
        # A model's RULES changed without a migration that gives the triggers the new ones?
        assert json.loads(bytes(args).split(b"\x00")[0]) == rules[table], name


@pytest.mark.postgres
def test_the_database_itself_sets_their_keys_null(db):
    """ON DELETE SET NULL: the trigger refuses an UPDATE that nulls a key whose row exists (Django's SET_NULL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.conrelid::regclass::text, a.attname, c.confdeltype FROM pg_constraint AS c "
            "JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY(%s) ORDER BY 1, 2",
            [[m._meta.db_table for m in APPEND_ONLY]],
        )
        keys = cursor.fetchall()
    assert keys == sorted(
        (m._meta.db_table, f.attname, "n") for m in APPEND_ONLY for f in m._meta.concrete_fields if f.is_relation)


# --- The recipe of docs/deploy.md ------------------------------------------------------------


def test_the_recipe_grants_the_app_no_privilege_that_undoes_the_guard():
    steps = deploy_recipe.recipe()
    after = " ".join(steps["after_migrate"]).upper()
    assert "GRANT ALL" not in after and "TRIGGER" not in after and "TRUNCATE" not in after
    assert "REFERENCES" not in after
    # The append-only tables lose DELETE; the superuser makes the prune role before migrate needs it.
    assert any(s.startswith("REVOKE DELETE ON jobs_execution, jobs_historyexport, jobs_membershipchange")
               for s in steps["after_migrate"])
    assert "CREATE ROLE ipsadmin_prune NOLOGIN" in steps["superuser"]
    assert "GRANT CREATE ON SCHEMA public TO ipsadmin_prune" in steps["before_migrate"]


def _superuser_url() -> str:
    u = urlsplit(database_url_for_subprocess())
    return urlunsplit(u._replace(path="/postgres"))


@pytest.mark.postgres
def test_the_recipe_runs_as_written_from_an_empty_database(db):
    """Done when: the recipe runs as written on PostgreSQL 15, from an empty database, as its non-superuser roles."""
    done = subprocess.run(
        [sys.executable, "scripts/pg_deploy_recipe.py", _superuser_url()],
        cwd=settings.BASE_DIR, env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        capture_output=True, text=True, timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "migrate as the owner: OK" in output
    assert "the app works, its check passes, the guards hold" in output
    assert "check --deploy refuses it (jobs.E002" in output
