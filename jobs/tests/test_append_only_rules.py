"""The rules of append-only tables read the same in both guards, whatever the type of a rule's value.

The ORM's guard (``Rules.stage_of``, ``_matches``) and PostgreSQL's
(``ipsadmin_append_only()``, which compares JSON) must agree on a bool or an
int rule as on a string one: ``as_json`` keeps the values' JSON types, and the
Python matcher compares them as JSON does (``true`` is not ``1`` nor ``"True"``).
"""

import importlib
import json

import pytest
from django.db import DatabaseError, connection, transaction

from jobs.models import Execution
from jobs.models.append_only import CLOCK_SKEW, Rules, Stage

RULES = Rules(kind="a test", row="thing", done="final",
              stages=(Stage(when={"flag": (True,), "n": (1,)}, writable=("note",)),))

ROWS = {  # (flag, n): in the stage?
    (True, 1): True,
    (False, 1): False,
    (True, 2): False,
}


def test_as_json_keeps_the_json_type_of_a_bool_and_an_int_rule():
    stage = json.loads(RULES.as_json())["stages"][0]
    assert stage["when"] == {"flag": [True], "n": [1]}


@pytest.mark.parametrize(("flag", "n"), list(ROWS))
def test_the_python_guard_matches_a_bool_and_an_int_rule_as_json_does(flag, n):
    assert (RULES.stage_of({"flag": flag, "n": n, "note": ""}) == 0) is ROWS[(flag, n)]


def test_the_python_guard_does_not_take_true_for_one_nor_a_string_for_its_value():
    assert RULES.stage_of({"flag": 1, "n": True, "note": ""}) is None
    assert RULES.stage_of({"flag": "True", "n": "1", "note": ""}) is None


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize(("flag", "n"), list(ROWS))
def test_the_database_guard_reads_the_same_rules_the_same_way(flag, n):
    """A temporary table under ipsadmin_append_only() with RULES.as_json(): its stage is Python's."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: the trigger function")
    rules = RULES.as_json().replace("'", "''")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE ipsadmin_rules_probe (id serial PRIMARY KEY, flag boolean, "
                       "n integer, note text) ON COMMIT DROP")
        cursor.execute("CREATE TRIGGER ipsadmin_rules_probe_append_only AFTER INSERT OR UPDATE ON ipsadmin_rules_probe "
                       f"FOR EACH ROW EXECUTE FUNCTION ipsadmin_append_only('{rules}')")
        cursor.execute("INSERT INTO ipsadmin_rules_probe (flag, n, note) VALUES (%s, %s, '') RETURNING id", [flag, n])
        [pk] = cursor.fetchone()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE ipsadmin_rules_probe SET note = 'changed' WHERE id = %s", [pk])
        writable = True
    except DatabaseError:
        writable = False
    assert writable is ROWS[(flag, n)] is (RULES.stage_of({"flag": flag, "n": n, "note": ""}) == 0)


def test_the_migrations_clock_skew_is_the_models():
    """0015's trigger holds the app's times to the same CLOCK_SKEW the models state."""
    migration = importlib.import_module("jobs.migrations.0015_append_only_records")
    assert migration.CLOCK_SKEW_SECONDS == CLOCK_SKEW.total_seconds()
    assert f"interval '{int(CLOCK_SKEW.total_seconds())} seconds'" in migration.FUNCTION


def test_execution_has_no_unused_identity_fields():
    """Identity is what no stage lets change (RULES): no second list of it to drift."""
    assert not hasattr(Execution, "IDENTITY_FIELDS")
