"""The one guard of every append-only table: its rows are added, live through fixed stages, and are never deleted.

Each model states its ``RULES`` once; two guards read them:

* the ORM's, here: ``AppendOnly`` (save, delete, refresh) and ``AppendOnlyQuerySet``
  (update, delete, bulk writes), for every database;
* PostgreSQL's, the trigger function ``ipsadmin_append_only()`` (migration 0015),
  which gets the same rules as JSON (``Rules.as_json``) and holds them against any
  SQL session, the application's own role included.

What the rules say:

* ``born``: what a new row may be (``when``: its values of some columns), and
  ``fresh``: columns the service leaves empty in such a row (checked by the
  database for every role that cannot drop its trigger);
* ``later``: columns no row is born with, whoever writes it;
* ``stages``: while the stored row matches ``when``, its ``writable`` columns may
  change; no stage: the row is final. A column writable in no stage is its identity;
* ``once``: columns set once, from empty;
* ``clock``: times written as "now": the database refuses another time (beyond
  ``CLOCK_SKEW``, migration 0015's ``CLOCK_SKEW_SECONDS``) from any role that
  cannot drop its trigger; such a role writes them on the database's clock
  (``AppendOnly._on_database_clock``), so an app server's clock off the
  database's does not stop it;
* rule values (``when``) are JSON scalars (null, bool, int, str), kept as such
  in ``as_json``; the ORM compares them as PostgreSQL compares jsonb;
* foreign keys are set NULL only when the row they point to is deleted (in
  PostgreSQL by its own ``ON DELETE SET NULL``: ``set_null_by_database``);
* ``deleted_by``: the one way rows are deleted, if any (prune_executions).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from django.db import connections, models, router
from django.utils import timezone

#: How far from the database's clock a "now" written by the application may be.
CLOCK_SKEW = dt.timedelta(minutes=2)
#: Below this, the app's clock is taken as the database's (AppendOnly._on_database_clock).
CLOCK_TOLERANCE = dt.timedelta(seconds=1)


def set_null_by_database(collector, field, sub_objs, using):
    """on_delete of the keys of append-only rows: PostgreSQL sets them NULL itself.

    Its ``ON DELETE SET NULL`` (migration 0015) is the only way such a key becomes
    NULL there: the trigger refuses an UPDATE that nulls a key whose row still
    exists, which is what Django's SET_NULL sends. Elsewhere (SQLite), Django's."""
    if connections[using].vendor != "postgresql":
        models.SET_NULL(collector, field, sub_objs, using)


# Never evaluated: like SET_NULL, the collector need not read the rows.
set_null_by_database.lazy_sub_objs = True


#: What a rule's value may be: a JSON scalar, compared as PostgreSQL compares jsonb.
RULE_VALUE_TYPES = (type(None), bool, int, str)


def _values(values) -> tuple:
    """A rule's values as they go to JSON: their own types (a bool stays true, an int 1), never strings."""
    values = tuple(values)
    for v in values:
        if not isinstance(v, RULE_VALUE_TYPES):
            raise TypeError(f"A rule's value is null, a bool, an int or a string (JSON's scalars), not {v!r}.")
    return values


def _as_json(value):
    """A value as jsonb compares it: true is not 1, 1 is not "1" (an int and a float alike are numbers)."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    return ("string", str(value))


@dataclass(frozen=True)
class Born:
    """One way a row may be born: ``when`` its columns hold these values, with ``fresh`` columns empty."""

    when: dict[str, tuple] = field(default_factory=dict)
    fresh: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """While the stored row matches ``when``, its ``writable`` columns may change."""

    when: dict[str, tuple]
    writable: tuple[str, ...]


def _matches(when: dict[str, tuple], row: dict) -> bool:
    """Does the row hold one of the values of each column ``when`` names (compared as JSON, like the trigger)?"""
    return all(_as_json(row[c]) in {_as_json(v) for v in _values(vs)} for c, vs in when.items())


def blank(value) -> bool:
    return value is None or value == ""


@dataclass(frozen=True)
class Rules:
    """What an append-only table's rows may do (see the module's docstring)."""

    #: What the table is, for messages: "an audit trail", "a record".
    kind: str
    #: A row, for messages: "execution".
    row: str
    #: What a row past its first stage is, for messages: "finished".
    done: str = "final"
    born: tuple[Born, ...] = (Born(),)
    #: How a row starts, for messages: "sending or as a refusal made here".
    born_as: str = "a new row"
    later: tuple[str, ...] = ()
    stages: tuple[Stage, ...] = ()
    once: tuple[str, ...] = ()
    clock: tuple[str, ...] = ()
    deleted_by: str = ""

    def __post_init__(self):
        # Both guards read the same values: JSON scalars (the trigger compares jsonb).
        for when in [b.when for b in self.born] + [s.when for s in self.stages]:
            for values in when.values():
                _values(values)

    def columns(self) -> set[str]:
        """Every column the rules name (each must be one of the table's)."""
        named = {*self.later, *self.once, *self.clock}
        for b in self.born:
            named |= {*b.when, *b.fresh}
        for s in self.stages:
            named |= {*s.when, *s.writable}
        return named

    def as_json(self) -> str:
        """The rules as the trigger reads them (its argument: migration 0015 and later)."""
        return json.dumps(
            {
                "kind": self.kind,
                "row": self.row,
                "done": self.done,
                "born": [{"when": {c: _values(v) for c, v in b.when.items()}, "fresh": b.fresh} for b in self.born],
                "born_as": self.born_as,
                "later": self.later,
                "stages": [{"when": {c: _values(v) for c, v in s.when.items()}, "writable": s.writable}
                           for s in self.stages],
                "once": self.once,
                "clock": self.clock,
                "deleted_by": self.deleted_by,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def stage_of(self, stored: dict) -> int | None:
        """The index of the stage the stored row is in; None: final."""
        for i, stage in enumerate(self.stages):
            if _matches(stage.when, stored):
                return i
        return None


class AppendOnlyQuerySet(models.QuerySet):
    """No bulk write of an append-only table: rows are added and changed one by one through save()."""

    def delete(self):
        self.model.check_delete()
        return super().delete()

    def _raw_delete(self, using):
        self.model.check_delete()
        return super()._raw_delete(using)

    def update(self, **kwargs):
        # The one exception: where the database does not set the keys of deleted
        # rows NULL itself (SQLite), Django's on_delete does it with this.
        keys = {f.name for f in self.model._meta.concrete_fields if f.is_relation}
        unlinks = kwargs and all(k in keys and v is None for k, v in kwargs.items())
        if unlinks and connections[self.db].vendor != "postgresql":
            return super().update(**kwargs)
        raise PermissionError(f"{self.model._meta.verbose_name_plural.capitalize()} change only one row at a time, "
                              "through their service.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise PermissionError(f"{self.model._meta.verbose_name_plural.capitalize()} are never changed in bulk.")

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for obj in objs:
            obj.check_insert()
        return super().bulk_create(objs, *args, **kwargs)


class AppendOnly(models.Model):
    """A model whose rows follow ``RULES``: inserted new, changed only as the stages allow, never deleted.

    Every save is checked against the row as stored, whichever fields the
    instance was loaded with (a field it did not load is read for the check)."""

    RULES: Rules

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True
        # Related-object access and Model.delete() go through the guarded queryset too.
        base_manager_name = "objects"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._stored = dict(zip(field_names, values))
        return instance

    def refresh_from_db(self, using=None, fields=None, from_queryset=None):
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        # Only what was just read is the stored row: a reloaded deferred field,
        # never the instance's other (perhaps changed) values.
        if fields:
            names = [self._meta.get_field(f).attname for f in fields]
        else:
            names = self._loaded()
        self._stored = {**getattr(self, "_stored", {}), **{n: getattr(self, n) for n in names}}

    def _loaded(self) -> list[str]:
        deferred = self.get_deferred_fields()
        return [f.attname for f in self._meta.concrete_fields if f.attname not in deferred]

    @classmethod
    def check_delete(cls) -> None:
        raise PermissionError(f"{cls._meta.verbose_name_plural.capitalize()} are {cls.RULES.kind}: "
                              + (f"only {cls.RULES.deleted_by} deletes them." if cls.RULES.deleted_by
                                 else "they are never deleted."))

    def check_insert(self) -> None:
        rules, name = self.RULES, self._meta.verbose_name
        if self.pk is not None:
            raise PermissionError(f"A new {name} is inserted as a new row, without a primary key of its own.")
        row = {f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields}
        if not any(_matches(b.when, row) for b in rules.born):
            shown = {c: row[c] for b in rules.born for c in b.when}
            raise PermissionError(f"A new {name} starts as {rules.born_as}, not {shown}.")
        for column in rules.later:
            if not blank(row[column]):
                raise PermissionError(f"A new {name} has no {column} yet.")

    def check_change(self, stored: dict, changed: set[str]) -> None:
        rules, name = self.RULES, self._meta.verbose_name
        stage = rules.stage_of(stored)
        writable = set(rules.stages[stage].writable) if stage is not None else set()
        ever_writable = {c for s in rules.stages for c in s.writable}
        keys = {f.attname for f in self._meta.concrete_fields if f.is_relation}
        for column in sorted(changed):
            if column in keys:
                raise PermissionError(f"This {name} keeps its {column}: it becomes empty only when that row is deleted.")
            if column not in ever_writable:
                raise PermissionError(f"The identity of this {name} cannot change: {column}.")
            if column not in writable and stage == 0:
                raise PermissionError(f"This {name} is not {rules.done} yet: its {column} cannot change now.")
            if column not in writable:
                raise PermissionError(f"This {name} is {rules.done}: its {column} is final and cannot change.")
            if column in rules.once and not blank(stored[column]):
                raise PermissionError(f"The {column} of this {name} is set once.")

    def clock_offset(self, using: str | None = None) -> dt.timedelta:
        """How far ahead of the app server's clock this row's times are written (read once per instance).

        PostgreSQL's guard holds a role that cannot drop its trigger to the
        database's clock (CLOCK_SKEW): an app server whose clock is off would have
        every press refused. For such a role this is the difference of the two
        clocks (``clock_timestamp()`` against ``timezone.now()``, one query), and
        the times it writes are shifted by it (``_on_database_clock``). Zero off
        PostgreSQL, for an owner or a superuser (not bound by that rule), and
        when the clocks agree within CLOCK_TOLERANCE."""
        cached = getattr(self, "_clock_offset", None)
        if cached is not None:
            return cached
        using = using or self._state.db or router.db_for_write(type(self), instance=self)
        if connections[using].vendor != "postgresql":
            return dt.timedelta(0)
        with connections[using].cursor() as cursor:
            before = timezone.now()
            cursor.execute(
                "SELECT clock_timestamp(), NOT pg_has_role(current_user, "
                "(SELECT relowner FROM pg_class WHERE oid = %s::regclass), 'MEMBER')",
                [self._meta.db_table],
            )
            database_now, bound = cursor.fetchone()
            after = timezone.now()
        offset = database_now - (before + (after - before) / 2)
        self._clock_offset = offset if bound and abs(offset) > CLOCK_TOLERANCE else dt.timedelta(0)
        return self._clock_offset

    def _on_database_clock(self, using: str, columns) -> None:
        """Move the "now" times about to be written (``RULES.clock``) onto the database's clock:
        a time that was "now" on the app server is "now" on the database (clock_offset)."""
        written = [c for c in self.RULES.clock if c in columns and getattr(self, c) is not None]
        if not written:
            return
        offset = self.clock_offset(using)
        if offset:
            for column in written:
                setattr(self, column, getattr(self, column) + offset)

    def save(self, *args, **kwargs):
        stored = getattr(self, "_stored", None)
        using = kwargs.get("using") or self._state.db or router.db_for_write(type(self), instance=self)
        if stored is None:
            # Never an UPDATE of a row this instance was not loaded from.
            self.check_insert()
            self._on_database_clock(using, self._loaded())
            kwargs["force_insert"] = True
            super().save(*args, **kwargs)
            self._stored = {c: getattr(self, c) for c in self._loaded()}
        else:
            loaded = self._loaded()
            # What the check needs and the instance did not read: from the database, now.
            needed = {c for c in (*loaded, *self.RULES.columns()) if c not in stored}
            if needed:
                stored = {**stored, **type(self)._base_manager.using(self._state.db or "default")
                          .filter(pk=self.pk).values(*sorted(needed)).get()}
                self._stored = stored
            changed = {c for c in loaded if getattr(self, c) != stored[c]}
            if kwargs.get("update_fields") is not None:
                changed &= {self._meta.get_field(f).attname for f in kwargs["update_fields"]}
            self.check_change(stored, changed)
            self._on_database_clock(using, changed)
            # Only what changed: an UPDATE never rewrites a column with what the instance believes.
            kwargs["update_fields"] = sorted(changed)
            super().save(*args, **kwargs)
            # What was written is stored now; a change left out of update_fields is not.
            self._stored = {**stored, **{c: getattr(self, c) for c in changed}}

    def delete(self, *args, **kwargs):
        self.check_delete()
        return super().delete(*args, **kwargs)
