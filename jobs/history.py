"""Reading the audit trail at any size: history pages, a job's figures, export chunks.

A history page is read from an index in its own order, and starts right
after the last row of the page before it (keyset paging): the first page, a
deep one and the last cost the same, at ten thousand rows or at a million.
Nothing counts the whole table: a page says how many rows match up to
COUNT_CAP, then "more than". Figures (success rate, runtimes) come from
aggregates the database computes over a bounded window of runs, never from
rows loaded into Python.

The indexes that serve all this are on Execution (models.py), one per filter
and sort, and composites for filters rare together while each is common.
Filters combine through plan(): the rarest filter (its index counts at
most DRIVE_CAP rows) is read whole and sorted, else the page's order is
walked with the filters checked on the way; either way a page reads a few
thousand index entries at most. docs/benchmarks.md has the figures
(bench/history_scale.py, bench/history_pairs.py).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from django.db import connections, models
from django.db.models import Avg, Count, F, Func, Max, Min, Q
from django.db.models.functions import Lower
from django.db.models.expressions import OrderBy, RawSQL
from django.utils import formats, timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .models import FAILED_IPS_RESULTS, FAILED_OUTCOMES, Execution, Job

PAGE_SIZE = 50
#: A page counts the rows that match up to this many, then says "more than".
COUNT_CAP = 1000
#: A job's figures are those of its latest runs sent to IPS: the same cost at
#: any history length, and what the job does now rather than a year ago.
STATS_WINDOW = 100
#: A company's summary on the jobs page covers this much time.
SUMMARY_PERIOD = dt.timedelta(hours=24)

IpsResult = Execution.IpsResult
SUCCEEDED_RESULTS = (IpsResult.OK, IpsResult.WARNINGS)


@dataclass(frozen=True)
class Sort:
    """One order of history pages, served by an index that ends with id."""

    key: str
    field: str
    descending: bool
    label: str
    #: Labels of the first, previous, next and last page links in this order.
    pager: tuple[str, str, str, str]
    #: Rows without a value (runs IPS never timed) are left out of this order.
    needs_value: bool = False

    @property
    def ordering(self) -> list[str]:
        sign = "-" if self.descending else ""
        return [f"{sign}{self.field}", f"{sign}id"]

    @property
    def reversed_ordering(self) -> list[str]:
        sign = "" if self.descending else "-"
        return [f"{sign}{self.field}", f"{sign}id"]


_BY_TIME = (_("Newest"), _("← Newer"), _("Older →"), _("Oldest"))
_BY_VALUE = (_("First"), _("← Previous"), _("Next →"), _("Last"))
SORTS = {
    s.key: s
    for s in [
        Sort("-requested", "requested_at", True, _("newest first"), _BY_TIME),
        Sort("requested", "requested_at", False, _("oldest first"), (_("Oldest"), _("← Older"), _("Newer →"), _("Newest"))),
        Sort("-ips_runtime", "ips_runtime_ms", True, _("longest IPS runtime first"), _BY_VALUE, True),
        Sort("ips_runtime", "ips_runtime_ms", False, _("shortest IPS runtime first"), _BY_VALUE, True),
        Sort("-request_time", "duration_ms", True, _("longest request time first"), _BY_VALUE, True),
        Sort("request_time", "duration_ms", False, _("shortest request time first"), _BY_VALUE, True),
    ]
}
DEFAULT_SORT = SORTS["-requested"]


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class CursorError(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: the sort value and id of the row it follows (or precedes)."""

    value: dt.datetime | int
    id: int

    def encode(self) -> str:
        value = self.value
        if isinstance(value, dt.datetime):
            value = (value - EPOCH) // dt.timedelta(microseconds=1)
        return f"{value}_{self.id}"

    @classmethod
    def decode(cls, text: str, sort: Sort) -> Cursor:
        value, _, pk = text.partition("_")
        try:
            number, pk = int(value), int(pk)
        except ValueError:
            raise CursorError(f"not a page position: {text!r}") from None
        if sort.field == "requested_at":
            try:
                return cls(EPOCH + dt.timedelta(microseconds=number), pk)
            except OverflowError:
                raise CursorError(f"not a page position: {text!r}") from None
        return cls(number, pk)

    @classmethod
    def of(cls, row, sort: Sort) -> Cursor:
        return cls(getattr(row, sort.field), row.pk)


def _side(cursor: Cursor, field_name: str, greater: bool, inclusive: bool = False) -> Q:
    """Rows whose (value, id) is greater (or less) than the cursor's, or equal
    when ``inclusive``. The first term alone is an index range (both databases
    use it as one); the second settles ties on the value by id."""
    near, strict = ("gte", "gt") if greater else ("lte", "lt")
    by_id = (near if inclusive else strict)
    return Q(**{f"{field_name}__{near}": cursor.value}) & (
        Q(**{f"{field_name}__{strict}": cursor.value}) | Q(**{field_name: cursor.value, f"id__{by_id}": cursor.id})
    )


def _beyond(cursor: Cursor, sort: Sort, forward: bool = True) -> Q:
    """Rows after the cursor in ``sort``'s order (before it, ``forward`` False)."""
    return _side(cursor, sort.field, greater=(not sort.descending) == forward)


@dataclass
class Page:
    rows: list
    sort: Sort
    has_previous: bool
    has_next: bool
    count: int
    #: More rows match than were counted (COUNT_CAP).
    count_capped: bool
    previous_cursor: str = ""
    next_cursor: str = ""

    @property
    def count_label(self) -> str:
        count = formats.number_format(self.count, force_grouping=True)
        if self.count_capped:
            return gettext("More than %(count)s executions") % {"count": count}
        return ngettext("%(count)s execution", "%(count)s executions", self.count) % {"count": count}


def capped_count(queryset, cap: int | None = None, ordering=()) -> tuple[int, bool]:
    """How many rows match, counting at most ``cap`` + 1 of them: (count, more than cap?).

    In ``ordering``, the page's: the database reads the first ``cap`` + 1 rows
    of the index the page is read from, and stops. Without (rows of several
    values of a split filter): whichever index finds them, nothing sorted."""
    cap = cap or COUNT_CAP
    n = queryset.order_by(*ordering)[: cap + 1].count()
    return min(n, cap), n > cap


def ordered(queryset, sort: Sort):
    """The rows in this order; for an order by a value, only rows that have it."""
    if sort.needs_value:
        queryset = queryset.filter(**{f"{sort.field}__isnull": False})
    return queryset


@dataclass(frozen=True)
class Split:
    """A filter that matches any of several values of one indexed column:
    ``lookup`` (a field or an alias of the queryset) compared to ``wrap(value)``."""

    lookup: str
    values: tuple
    wrap: object = None

    def __len__(self):
        return len(self.values)

    def q(self, value) -> Q:
        return Q(**{self.lookup: self.wrap(value) if self.wrap else value})


# Stand-ins compiled once in a union's branch, then replaced by each value.
_STAND_INS = {int: -7_318_921_551, str: "\x00ipsadmin split value\x00"}


#: PostgreSQL reads a time range of at most this many rows whole and sorts it, for a page by
#: a value (plan()): a few milliseconds at any size; a range of more is dense enough that
#: walking the value's index finds a page soon.
PG_SPAN_CAP = 10_000

#: PostgreSQL reads a split (plan(): several jobs by a value) value by value up to this
#: many values (a job-name part matches at most HistoryFilterForm.MAX_MATCHES jobs).
PG_UNION_MAX = 50


def in_order(queryset, order: list[str], size: int, split: Split | None = None, base=None):
    """The first ``size`` rows of ``queryset`` in ``order``.

    ``split``: filters on one indexed column, one per value (job_id=1, job_id=7,
    ...), when the rows match one of several. SQLite, without statistics,
    answers an IN over them from that column's index, fetching every matching
    row and sorting them all; instead each value's first ``size`` rows come
    from its index in order (UNION ALL), and only those are sorted: a page
    costs the same however many rows each value has. PostgreSQL gets a split
    only for several jobs by a value (plan()), where it would fetch every run
    of them all and sort them: one branch, planned once and run for each value
    (CROSS JOIN LATERAL over the values; a union of fifty branches took it
    15-30 ms to plan). ``base``: ``queryset`` without the split's own filter
    (the IN over the values), the branch's start: beside the branch's
    equality, PostgreSQL would misjudge its rows and skip the ordered index
    (without it, PostgreSQL reads the plain IN: the export's chunks)."""
    postgresql = connections[queryset.db].vendor != "sqlite"
    if not split or len(split) < 2 or postgresql and (base is None or len(split) > PG_UNION_MAX):
        return queryset.order_by(*order)[:size]
    if postgresql:
        outer = queryset.model.objects.filter(_each_value(queryset if base is None else base, split, order, size))
    else:
        # One branch compiled (compiling fifty would cost more than running them),
        # with a stand-in for the value, then repeated with each value.
        branch, at, template = _branch(queryset if base is None else base, split, order, size)
        sql = " UNION ALL ".join(f"SELECT * FROM ({branch}) AS b{i}" for i in range(len(split)))
        params = tuple(value if i == at else p for value in split.values for i, p in enumerate(template))
        outer = queryset.model.objects.filter(pk__in=RawSQL(sql, params))
    outer.query.select_related = queryset.query.select_related
    return outer.order_by(*[_plain(o) for o in order])[:size]


def _branch(start, split: Split, order, size: int):
    """One value's query (its first ``size`` ids in ``order``), compiled once with a stand-in
    for the value: (sql, the stand-in's index in the parameters, the parameters)."""
    stand_in = _STAND_INS[type(split.values[0])]
    sql, template = start.filter(split.q(stand_in)).order_by(*order).values("pk")[:size].query.sql_with_params()
    [at] = [i for i, p in enumerate(template) if p == stand_in]
    return sql, at, template


def _each_value(start, split: Split, order, size: int, limit: int | None = None) -> RawSQL:
    """PostgreSQL: ``id`` among each value's first ``size`` rows of ``start`` in ``order``, the
    branch planned once and run for each value (CROSS JOIN LATERAL; a union of fifty branches
    took it 15-30 ms to plan), at most ``limit`` of them in all. As an IN, PostgreSQL may hash
    the ids and scan the whole table to join them: ``id = ANY(ARRAY(...))`` reads each by its key."""
    branch, at, template = _branch(start, split, order, size)
    pieces = branch.split("%s")
    lateral = "".join(piece + ('"split"."value"' if i == at else "%s" if i < len(pieces) - 1 else "")
                      for i, piece in enumerate(pieces))
    kind = "bigint[]" if isinstance(split.values[0], int) else "text[]"
    table = start.model._meta.db_table
    sql = (f'"{table}"."id" = ANY(ARRAY(SELECT "b"."pk" FROM unnest(%s::{kind}) AS "split"("value") '
           f'CROSS JOIN LATERAL ({lateral}) AS "b"{"" if limit is None else f" LIMIT {int(limit)}"}))')
    params = (list(split.values), *(p for i, p in enumerate(template) if i != at))
    return RawSQL(sql, params, output_field=models.BooleanField())


def _plain(order):
    """An ordering on a column's "+column" alias, on the column itself (a query without the alias)."""
    if isinstance(order, OrderBy) and isinstance(order.expression, F) and order.expression.name.endswith("_unindexed"):
        return OrderBy(F(order.expression.name.removesuffix("_unindexed")), descending=order.descending)
    return order


#: A filter whose own index finds at most this many rows (a count that stops
#: there) has them read from it and sorted; a filter with more is dense
#: enough that walking the page's order and checking it on the way finds a
#: page within about PAGE_SIZE × rows ÷ DRIVE_CAP entries. Either way a page
#: reads a few thousand index entries at most, at 10k rows or at 1M.
DRIVE_CAP = 4000
#: Pairs of filters with a composite index (column, column, requested_at, id): a user or a
#: company with an outcome or an IPS result, a user with a job or a company, rare together while each is common.
COMPOSITES = [("username_lower", "outcome"), ("username_lower", "ips_result"), ("company_id", "outcome"),
              ("company_id", "ips_result"), ("username_lower", "job_id"), ("username_lower", "company_id")]
#: Columns execution_job_status_recent carries after (job, requested_at, id): checked there, no row read.
_IN_JOB_INDEX = {"outcome", "ips_result"}
#: Which index walks when several filters are dense (job first: fewest rows of its own).
_WALK_PREFERENCE = ["job_id", "username_lower", "ips_result", "outcome", "company_id", "started_by"]


@dataclass(frozen=True)
class Term:
    """One filter of a history page with an index of its own, (column,
    requested_at, id), or the time range (execution_recent): ``field`` equal
    to one of ``values`` (wrapped by ``wrap``), or ``requested_at`` in
    [start, end)."""

    field: str
    values: tuple = ()
    wrap: object = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    #: Filters on the next columns of a composite index led by this one (COMPOSITES): one term.
    also: tuple = ()

    @property
    def is_range(self) -> bool:
        return self.field == "requested_at"

    @property
    def fields(self) -> set[str]:
        return {self.field, *(t.field for t in self.also)}

    def q(self, field: str | None = None, hide=None) -> Q:
        """The filter on its column (indexed), or on ``field`` (the same value written so no
        index answers it); ``hide``: the name of each column's such stand-in, for a compound."""
        if hide:
            return Term(self.field, self.values, self.wrap, self.start, self.end).q(hide(self.field)) & Q(
                *[t.q(hide(t.field)) for t in self.also])
        if self.also:
            return Term(self.field, self.values, self.wrap, self.start, self.end).q(field) & Q(*[t.q() for t in self.also])
        name = field or self.field
        if self.is_range:
            q = Q()
            if self.start:
                q &= Q(**{f"{name}__gte": self.start})
            if self.end:
                q &= Q(**{f"{name}__lt": self.end})
            return q
        values = [self.wrap(v) if self.wrap else v for v in self.values]
        return Q(**{name: values[0]}) if len(values) == 1 else Q(**{f"{name}__in": values})

    def split(self) -> Split | None:
        return Split(self.field, self.values, self.wrap) if len(self.values) > 1 else None


def _unindexed_name(field: str) -> str:
    return f"{field}_unindexed"


def _with_unindexed(queryset, fields):
    """The queryset with "+column" aliases: a unary plus, a no-op on any value (PostgreSQL:
    on a number), keeps the planner from answering a term through that column's index."""
    aliases = {}
    for name in fields:
        source = Lower("username") if name == "username_lower" else F(name)
        kind = "CharField" if name == "username_lower" else Execution._meta.get_field(name).get_internal_type()
        output = {"DateTimeField": models.DateTimeField, "CharField": models.CharField,
                  "TextField": models.CharField}.get(kind, models.BigIntegerField)()
        aliases[_unindexed_name(name)] = Func(source, template="+%(expressions)s", output_field=output)
    return queryset.alias(**aliases)


@dataclass
class Plan:
    """How a page of ``terms`` in ``sort``'s order is read (see plan())."""

    rows: object  # the filtered queryset
    ordering: list
    reversed_ordering: list
    sort_field: str  # the name the keyset compares (the column, or its unindexed alias)
    split: Split | None
    count: object  # the queryset the count is taken from
    driver: str = ""  # the term read whole from its index, or "" (walking the order)
    count_ordering: tuple = ()  # the order the count reads its rows in (none: any index)
    split_rows: object = None  # ``rows`` without the split's own filter (in_order's base), or None


def plan(queryset, terms: list[Term], sort: Sort, cap: int | None = None) -> Plan:
    """Choose how a page is read, whatever the selectivity of each filter.

    Each filter's own index first counts its rows, up to ``cap`` (DRIVE_CAP)
    and no further. The rarest one, at or under the cap, is the driver: its
    rows are read from its index (each of its values' in time order,
    in_order()), the other filters checked on the way, and sorted. No filter
    that rare: the page's order is walked (the sort's index, or for time order
    the index of the dense filter most likely the fewest), the filters
    checked on the way. SQLite, without statistics, is kept from any other
    choice by writing the other filters, and the sort's column when a driver
    is read, as "+column" (no index answers them). PostgreSQL chooses from
    its statistics: it gets the filters plainly written, no probe, and the
    count in the page's order (with a job filter: in any order, from the
    jobs' index); what it gains here is the composite indexes, the pairs
    known to match nothing, and several jobs by a value read job by job."""
    cap = cap or DRIVE_CAP
    sqlite = connections[queryset.db].vendor == "sqlite"
    terms = _narrowed(terms)
    if _contradictory(terms, sort):
        # Rows that cannot exist: no index walked to its end to find none.
        none = queryset.none()
        return Plan(none, sort.ordering, sort.reversed_ordering, sort.field, None, none, driver="none")
    terms = _compounded(terms)
    fields = {f for t in terms for f in t.fields}
    if "username_lower" in fields:
        queryset = queryset.alias(username_lower=Lower("username"))
    if sqlite:
        queryset = _with_unindexed(queryset, fields | ({sort.field} if sort.needs_value else set()))

    if not sqlite:
        # PostgreSQL chooses from its statistics (composites included); a probe with LIMIT
        # would tempt it into a sequential scan. The count reads the page's order, as before.
        rows = queryset.filter(*[t.q() for t in terms])
        if sort.needs_value:
            rows = rows.filter(**{f"{sort.field}__isnull": False})
            span = next((t for t in terms if t.is_range), None)
            if span is not None and queryset.filter(span.q()).order_by()[: PG_SPAN_CAP + 1].count() <= PG_SPAN_CAP:
                # A time range of few rows, by a value: its rows read from execution_recent and sorted.
                # Its statistics cannot tell PostgreSQL that recent rows are not spread evenly along
                # the value's index: walking that, it read 34k entries for a page of the last 24 h.
                hidden_sort = _unindexed_name(sort.field)
                rows = _with_unindexed(rows, {sort.field})
                return Plan(rows, _ordering(sort, hidden_sort), _ordering(sort, hidden_sort, True), hidden_sort,
                            None, rows, driver=span.field, count_ordering=tuple(DEFAULT_SORT.ordering))
        # Several jobs by a value: each job's first rows from its (job, value) index, job by
        # job (in_order); PostgreSQL would otherwise fetch every run of them all and sort them.
        jobs = next((t for t in terms if t.field == "job_id" and len(t.values) > 1), None) if sort.needs_value else None
        split = jobs.split() if jobs and len(jobs.values) <= PG_UNION_MAX else None
        others = None
        if split:
            others = queryset.filter(*[t.q() for t in terms if t is not jobs], **{f"{sort.field}__isnull": False})
        # Jobs: counted from their index in any order (the page's order would walk the sort's
        # index past other jobs' rows, checking each: 80 ms at 1M rows for 14 jobs).
        by_job = any(t.field == "job_id" for t in terms)
        count = rows
        user = next((t for t in terms if t.field == "username_lower" and not t.also), None)
        if by_job and user and len(user.values) <= PG_UNION_MAX:
            # Users and jobs, several of either: counted user by user in execution_user_job (both
            # its columns in the index condition). As one query PostgreSQL misjudges the pair's
            # rows and reads the table until it has counted enough (40 ms at 1M rows).
            start = queryset.filter(*[t.q() for t in terms if t is not user])
            if sort.needs_value:
                start = start.filter(**{f"{sort.field}__isnull": False})
            limit = COUNT_CAP + 1
            count = queryset.model.objects.filter(_each_value(start, user.split() or Split(
                user.field, user.values, user.wrap), (), limit, limit=limit))
        if by_job:
            count_ordering = ()
        elif sort.needs_value and any(t.is_range for t in terms):
            # A time range by a value: counted along execution_recent, the range's own rows (in the
            # value's order the count would read past every row outside it: 15k entries at 1M rows
            # for the last 30 days; in no order, PostgreSQL may scan the table from its oldest rows).
            count_ordering = tuple(DEFAULT_SORT.ordering)
        else:
            count_ordering = tuple(sort.ordering)
        return Plan(rows, sort.ordering, sort.reversed_ordering, sort.field, split, count,
                    count_ordering=count_ordering, split_rows=others)

    def hidden(term) -> Q:
        return term.q(hide=_unindexed_name)

    by_time = sort.field == "requested_at"
    probes = {}
    if len(terms) > 1 or (terms and not by_time):
        for term in terms:
            probes[term] = queryset.filter(term.q()).order_by()[: cap + 1].count()
    rare = [t for t in terms if probes.get(t, cap + 1) <= cap]
    if rare:
        rank = {f: i for i, f in enumerate(_WALK_PREFERENCE)}
        driver = min(rare, key=lambda t: (probes[t], len(t.values) > 1, rank.get(t.field, len(rank))))
        sort_field = _unindexed_name(sort.field) if sqlite and not by_time else sort.field

        def driven(own: Q):
            out = queryset.filter(own)
            for term in terms:
                if term is not driver:
                    # The time range stays on its column beside an equality: (column, requested_at) serves both.
                    out = out.filter(term.q() if term.is_range and not driver.is_range and by_time else hidden(term))
            if sort.needs_value:
                out = out.filter(**{f"{sort_field}__isnull": False})
            return out

        rows, split = driven(driver.q()), driver.split()
        return Plan(rows, _ordering(sort, sort_field), _ordering(sort, sort_field, True), sort_field,
                    split, rows, driver=driver.field, split_rows=driven(_also(driver)) if split else None)
    # Walking: no filter is rare. The count needs no order: it walks the
    # index of one dense filter (time order) as the time-order page would.
    walk = _walker(terms)

    def walked(through, split_values: bool = True):
        out = queryset
        for term in terms:
            keep = term is through or (term.is_range and (through is None or not through.is_range))
            if term is through and not split_values:
                out = out.filter(_also(term))
            else:
                out = out.filter(term.q() if keep else hidden(term))
        return out

    count = walked(walk)
    split_rows = None
    if by_time:
        rows, split = count, walk.split() if walk else None
        if split:
            split_rows = walked(walk, split_values=False)
    else:
        rows, split = queryset, None
        # An outcome's, or an IPS result's, rows by a value: (outcome, value, id), walked in
        # order (they correlate: the shortest request times are refusals, never sent), the
        # other filters checked on the way.
        by_status = next((t for f in ("outcome", "ips_result") for t in terms
                          if t.field == f and not t.also and len(t.values) == 1), None)
        for term in terms:
            rows = rows.filter(term.q() if term is by_status else hidden(term))
    # Jobs with an outcome or an IPS result: counted in execution_job_status_recent, which
    # carries both (no row read), rather than along the walked index, a row read for each
    # entry to check the job (a rare pair read the outcome's 15k rows at 1M to count 500).
    jobs = next((t for t in terms if t.field == "job_id"), None)
    user = next((t for t in terms if t.field == "username_lower" and not t.also), None)
    if jobs and jobs is not walk and all(t is jobs or t.is_range or t.field in _IN_JOB_INDEX for t in terms):
        count = walked(jobs)
    elif jobs and user and all(t in (jobs, user) or t.is_range for t in terms):
        # A user's runs of several jobs: counted in execution_user_job (user, job), exactly theirs.
        count = queryset.filter(user.q(), jobs.q(), *[hidden(t) for t in terms if t.is_range])
    if sort.needs_value:
        rows = rows.filter(**{f"{sort.field}__isnull": False})
        count = count.filter(**{f"{_unindexed_name(sort.field) if sqlite else sort.field}__isnull": False})
    return Plan(rows, sort.ordering, sort.reversed_ordering, sort.field, split, count, split_rows=split_rows)


def _also(term: Term) -> Q:
    """A split term's filters but its own values (each branch of in_order() has its one value):
    beside the branch's equality, an IN over every value on the same column led SQLite to the
    column's plain index instead of the composite (a user part with the busiest job: ×5 at 1M)."""
    return Q(*[t.q() for t in term.also])


#: Outcomes whose rows may carry what IPS did (ips_result, ips_runtime_ms): Execution.RULES
#: lets following the run write them only on these (accepted, or sent with an uncertain end).
_FOLLOWED_OUTCOMES = frozenset({Execution.Outcome.ACCEPTED, *Execution.UNCERTAIN})
#: Runs IPS started (found by the watcher) are born without a request time and never get one (SEEN_FRESH).
_NOT_PRESSED = frozenset({Execution.StartedBy.SCHEDULE, Execution.StartedBy.OTHER})


def _contradictory(terms: list[Term], sort: Sort) -> bool:
    """Do the filters, by the rules of the audit trail, match no row? Such a pair (a
    refusal and an IPS result; a run IPS started, by request time) has no row to stop a
    walk early: it would read the walked index to its end."""
    values = {}
    for term in terms:
        if not term.is_range:
            values.setdefault(term.field, set(term.values))
            values[term.field] &= set(term.values)
    if any(not v for v in values.values()):
        return True
    outcomes = values.get("outcome")
    if outcomes and not outcomes & _FOLLOWED_OUTCOMES and (
        "" not in values.get("ips_result", {""}) or sort.field == "ips_runtime_ms"
    ):
        return True
    return bool(values.get("started_by") and values["started_by"] <= _NOT_PRESSED and sort.field == "duration_ms")


def _narrowed(terms: list[Term]) -> list[Term]:
    """Jobs in a company filter: only that company's (the job table is small). A job of
    another company then leaves none, rather than a walk through the job's rows finding none."""
    companies = [set(t.values) for t in terms if t.field == "company_id"]
    if not companies or not any(t.field == "job_id" for t in terms):
        return terms
    out = []
    for term in terms:
        if term.field == "job_id":
            jobs = Job.objects.filter(pk__in=term.values)
            for ids in companies:
                jobs = jobs.filter(company_id__in=ids)
            kept = set(jobs.values_list("pk", flat=True))
            term = Term("job_id", tuple(v for v in term.values if v in kept))
        out.append(term)
    # A job's runs are its company's (press and watcher copy the job's): the company says no more.
    return [t for t in out if t.field != "company_id"]


def _compounded(terms: list[Term]) -> list[Term]:
    """Two filters one composite index serves (COMPOSITES), one term: their rows
    counted, and read in time order, from it together."""
    terms = list(terms)
    for first, second in COMPOSITES:
        # Not a user's several companies: those are walked past, never merged (_walker).
        a = next((t for t in terms if t.field == first and not t.also
                  and (len(t.values) == 1 or first != "company_id")), None)
        b = next((t for t in terms if t.field == second and not t.also and len(t.values) == 1), None)
        if a and b:
            terms.remove(b)
            terms[terms.index(a)] = Term(a.field, a.values, a.wrap, also=(b,))
    return terms


def _walker(terms: list[Term]) -> Term | None:
    """The dense filter whose (column, requested_at) index a time-order walk reads: one of a
    single value, else one of several (each value's index merged), else none (execution_recent)."""
    # Several companies (a user's) are walked past: execution_recent, their filter checked on
    # the way (one page over their share of the rows), not merged from each one's index.
    equal = [t for t in terms if not t.is_range and not (t.field == "company_id" and len(t.values) > 1)]
    if not equal:
        return None
    rank = {f: i for i, f in enumerate(_WALK_PREFERENCE)}
    return min(equal, key=lambda t: (not t.also, len(t.values) > 1, rank.get(t.field, len(rank))))


def _ordering(sort: Sort, field: str, reverse: bool = False) -> list:
    descending = sort.descending != reverse
    return [F(field).desc() if descending else F(field).asc(), "-id" if descending else "id"]


def planned_page(queryset, terms: list[Term], sort: Sort = DEFAULT_SORT, after: str = "", before: str = "",
                 last: bool = False, size: int | None = None) -> Page:
    """One page of ``queryset`` filtered by ``terms``, read as plan() chooses."""
    chosen = plan(queryset, terms, sort)
    return page(chosen.rows, sort, after=after, before=before, last=last, size=size, split=chosen.split,
                chosen=chosen)


def page(queryset, sort: Sort = DEFAULT_SORT, after: str = "", before: str = "", last: bool = False,
         size: int | None = None, split: Split | None = None, chosen: Plan | None = None) -> Page:
    """One page of ``queryset`` in ``sort``'s order: the first, the one after or
    before a row (cursors from an earlier page), or the last.

    Three queries at most, each reading about a page of an index: the rows,
    whether any lie on the other side of the cursor (a page after or before
    a row), and the capped count."""
    size = size or PAGE_SIZE
    if chosen:
        rows_qs, field, ordering, reversed_ordering = chosen.rows, chosen.sort_field, chosen.ordering, chosen.reversed_ordering
    else:
        rows_qs, field, ordering, reversed_ordering = ordered(queryset, sort), sort.field, sort.ordering, sort.reversed_ordering
    base = chosen.split_rows if chosen else None
    if after or before:
        cursor = Cursor.decode(after or before, sort)
        forward = bool(after)
        order = ordering if forward else reversed_ordering
        beyond = _side(cursor, field, greater=(not sort.descending) == forward)
        rows = list(in_order(rows_qs.filter(beyond), order, size + 1, split, base=None if base is None else base.filter(beyond)))
        more = len(rows) > size
        rows = rows[:size]
        # Rows on the other side of the cursor, its own row included: a link back.
        back = _side(cursor, field, greater=(not sort.descending) != forward, inclusive=True)
        behind = rows_qs.filter(back).order_by(*(reversed_ordering if forward else ordering))[:1].exists()
        if not forward:
            rows.reverse()
        has_previous, has_next = (behind, more) if forward else (more, behind)
    elif last:
        rows = list(in_order(rows_qs, reversed_ordering, size + 1, split, base=base))
        has_previous, has_next = len(rows) > size, False
        rows = rows[:size]
        rows.reverse()
    else:
        rows = list(in_order(rows_qs, ordering, size + 1, split, base=base))
        has_previous, has_next = False, len(rows) > size
        rows = rows[:size]
    if chosen:
        count, capped = capped_count(chosen.count, ordering=chosen.count_ordering)
    else:
        count, capped = capped_count(rows_qs, ordering=() if split and len(split) > 1 else sort.ordering)
    result = Page(rows, sort, has_previous, has_next, count, capped)
    if rows:
        result.previous_cursor = Cursor.of(rows[0], sort).encode()
        result.next_cursor = Cursor.of(rows[-1], sort).encode()
    return result


def visible_to(user, company_ids, by_company_index: bool = True) -> models.QuerySet:
    """The executions a user may read: every one for a superuser (deleted
    companies' too), else those of ``company_ids``.

    On SQLite, which has no statistics here, the companies are filtered as
    "+company_id IN (...)": the unary plus keeps it from answering through the
    per-company index, which would return each company's rows in its own
    order and sort them all, or, for one company, scan all of its rows for
    those of a rare user or outcome. The rows are read instead in page order
    from execution_recent or the index of another filter, and the companies
    checked on the way: a page costs one page of rows over the share of the
    user's companies, at any table size. One company and no other filter
    (``by_company_index``): its own index, in order. PostgreSQL, with its
    statistics, chooses well from a plain IN; it cannot estimate an
    expression, and a wrong estimate there costs more than it saves."""
    if user.is_superuser:
        return Execution.objects.all()
    company_ids = list(company_ids)
    if connections[Execution.objects.db].vendor != "sqlite":
        return Execution.objects.filter(company_id__in=company_ids)
    if by_company_index and len(company_ids) == 1:
        return Execution.objects.filter(company_id=company_ids[0])
    return Execution.objects.alias(
        company_unindexed=Func(F("company_id"), template="+%(expressions)s", output_field=models.BigIntegerField())
    ).filter(company_unindexed__in=company_ids)


def visible_terms(user, company_ids) -> list[Term]:
    """The executions a user may read, as a term of plan(): none for a superuser
    (every row, deleted companies' too), else those of ``company_ids``."""
    return [] if user.is_superuser else [Term("company_id", tuple(company_ids))]


def chunks(queryset, sort: Sort, fields: list[str], size: int = 2000, split: Split | None = None):
    """Every row of ``queryset`` in ``sort``'s order, as tuples of ``fields``,
    read ``size`` rows a query by keyset: constant memory, no long-held cursor."""
    queryset = ordered(queryset, sort)
    columns = [*fields, sort.field, "id"]
    cursor = None
    while True:
        qs = queryset if cursor is None else queryset.filter(_beyond(cursor, sort))
        rows = list(in_order(qs, sort.ordering, size, split).values_list(*columns))
        for row in rows:
            yield row[: len(fields)]
        if len(rows) < size:
            return
        cursor = Cursor(rows[-1][-2], rows[-1][-1])


# --- Figures ---------------------------------------------------------------------------

_ENDED = ~Q(outcome=Execution.Outcome.SENDING) & ~Q(outcome=Execution.Outcome.ACCEPTED, ips_result="")
_SUCCEEDED = Q(ips_result__in=SUCCEEDED_RESULTS)
_FAILED = Q(outcome__in=FAILED_OUTCOMES) | Q(ips_result__in=FAILED_IPS_RESULTS)


@dataclass
class RunStats:
    """What a bounded set of runs did: counts, success rate, IPS runtimes."""

    runs: int = 0
    ended: int = 0
    succeeded: int = 0
    warnings: int = 0
    failed: int = 0
    timed: int = 0
    avg_runtime_ms: float | None = None
    p95_runtime_ms: int | None = None
    since: dt.datetime | None = None
    last_at: dt.datetime | None = None
    extra: dict = field(default_factory=dict)

    @property
    def success_rate(self) -> float | None:
        """Succeeded (IPS finished, warnings included) over ended runs, in percent."""
        return None if not self.ended else 100.0 * self.succeeded / self.ended

    @property
    def avg_runtime(self) -> dt.timedelta | None:
        return None if self.avg_runtime_ms is None else dt.timedelta(milliseconds=self.avg_runtime_ms)

    @property
    def p95_runtime(self) -> dt.timedelta | None:
        return None if self.p95_runtime_ms is None else dt.timedelta(milliseconds=self.p95_runtime_ms)


_FIGURES = dict(
    runs=Count("id"),
    ended=Count("id", filter=_ENDED),
    succeeded=Count("id", filter=_SUCCEEDED),
    warnings=Count("id", filter=Q(ips_result=IpsResult.WARNINGS)),
    failed=Count("id", filter=_FAILED),
    timed=Count("ips_runtime_ms"),
    avg_runtime_ms=Avg("ips_runtime_ms"),
    since=Min("requested_at"),
    last_at=Max("requested_at"),
)


def job_stats(job, window: int | None = None) -> RunStats:
    """The figures of the job's latest ``window`` runs sent to IPS: two queries,
    each over at most ``window`` rows of execution_job_status_recent."""
    window = window or STATS_WINDOW
    latest = Execution.objects.filter(job=job).sent().order_by("-requested_at", "-id")[:window]
    stats = RunStats(**latest.aggregate(**_FIGURES))
    if stats.timed:
        # Nearest rank: the smallest runtime at or above 95 % of the timed runs.
        skip = stats.timed - math.ceil(0.95 * stats.timed)
        stats.p95_runtime_ms = (
            Execution.objects.filter(pk__in=latest.values("pk"), ips_runtime_ms__isnull=False)
            .order_by("-ips_runtime_ms", "-id")
            .values_list("ips_runtime_ms", flat=True)[skip : skip + 1]
            .first()
        )
    return stats


def last_failure(job):
    """The job's latest failed run (execution_job_failures: its first entry), or None."""
    return Execution.objects.filter(job=job).failures().order_by("-requested_at", "-id").first()


def company_summaries(company_ids, now=None) -> dict[int, RunStats]:
    """{company id: the figures of its runs over the last SUMMARY_PERIOD}, in one query."""
    since = (now or timezone.now()) - SUMMARY_PERIOD
    rows = (
        Execution.objects.filter(company_id__in=list(company_ids), requested_at__gte=since)
        .sent()
        .order_by()
        .values("company_id")
        .annotate(**_FIGURES)
    )
    return {row.pop("company_id"): RunStats(**row) for row in rows}
