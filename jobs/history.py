"""Reading the audit trail at any size: history pages, a job's figures, export chunks.

A history page is read from an index in its own order, and starts right
after the last row of the page before it (keyset paging): the first page, a
deep one and the last cost the same, at ten thousand rows or at a million.
Nothing counts the whole table: a page says how many rows match up to
COUNT_CAP, then "more than". Figures (success rate, runtimes) come from
aggregates the database computes over a bounded window of runs, never from
rows loaded into Python.

The indexes that serve all this are on Execution (models.py), one per filter
and sort; docs/benchmarks.md has the figures (bench/history_scale.py).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from django.db import connections, models
from django.db.models import Avg, Count, F, Func, Max, Min, Q
from django.db.models.expressions import RawSQL
from django.utils import formats, timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .models import FAILED_IPS_RESULTS, FAILED_OUTCOMES, Execution

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


def in_order(queryset, order: list[str], size: int, split: Split | None = None):
    """The first ``size`` rows of ``queryset`` in ``order``.

    ``split``: filters on one indexed column, one per value (job_id=1, job_id=7,
    ...), when the rows match one of several. SQLite, without statistics,
    answers an IN over them from that column's index, fetching every matching
    row and sorting them all; instead each value's first ``size`` rows come
    from its index in order (UNION ALL), and only those are sorted: a page
    costs the same however many rows each value has. PostgreSQL's planner,
    with its statistics, already chooses well for an IN (the time index while
    the values are common, theirs when they are rare), and planning a union of
    fifty branches costs it more than it saves."""
    if not split or len(split) < 2 or connections[queryset.db].vendor != "sqlite":
        return queryset.order_by(*order)[:size]
    # One branch compiled (compiling fifty would cost more than running them),
    # with a stand-in for the value, then repeated with each value.
    stand_in = _STAND_INS[type(split.values[0])]
    branch, template = queryset.filter(split.q(stand_in)).order_by(*order).values("pk")[:size].query.sql_with_params()
    [at] = [i for i, p in enumerate(template) if p == stand_in]
    sql = " UNION ALL ".join(f"SELECT * FROM ({branch}) AS b{i}" for i in range(len(split)))
    params = tuple(value if i == at else p for value in split.values for i, p in enumerate(template))
    outer = queryset.model.objects.filter(pk__in=RawSQL(sql, params))
    outer.query.select_related = queryset.query.select_related
    return outer.order_by(*order)[:size]


def page(queryset, sort: Sort = DEFAULT_SORT, after: str = "", before: str = "", last: bool = False,
         size: int | None = None, split: Split | None = None) -> Page:
    """One page of ``queryset`` in ``sort``'s order: the first, the one after or
    before a row (cursors from an earlier page), or the last.

    Three queries at most, each reading about a page of an index: the rows,
    whether any lie on the other side of the cursor (a page after or before
    a row), and the capped count."""
    size = size or PAGE_SIZE
    rows_qs = ordered(queryset, sort)
    if after or before:
        cursor = Cursor.decode(after or before, sort)
        forward = bool(after)
        order = sort.ordering if forward else sort.reversed_ordering
        rows = list(in_order(rows_qs.filter(_beyond(cursor, sort, forward)), order, size + 1, split))
        more = len(rows) > size
        rows = rows[:size]
        # Rows on the other side of the cursor, its own row included: a link back.
        back = _side(cursor, sort.field, greater=(not sort.descending) != forward, inclusive=True)
        behind = rows_qs.filter(back).order_by(*(sort.reversed_ordering if forward else sort.ordering))[:1].exists()
        if not forward:
            rows.reverse()
        has_previous, has_next = (behind, more) if forward else (more, behind)
    elif last:
        rows = list(in_order(rows_qs, sort.reversed_ordering, size + 1, split))
        has_previous, has_next = len(rows) > size, False
        rows = rows[:size]
        rows.reverse()
    else:
        rows = list(in_order(rows_qs, sort.ordering, size + 1, split))
        has_previous, has_next = False, len(rows) > size
        rows = rows[:size]
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
    each over at most ``window`` rows of execution_job_recent."""
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
