"""The CSV export of history: its columns, and each cell written so that no
spreadsheet runs or reorders it. The rows come from history.chunks (keyset
chunks, constant memory); services.exports writes them to a file in a worker.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from django.db.models import Func, TextField
from django.utils import timezone

from .history import Sort, Split, chunks, ordered
from .text import neutralise_bidi

#: The CSV columns: header, and the Execution field each comes from (company: its name).
#: "started by": here (pressed in the dashboard), schedule (IPS's scheduler) or other (another IPS
#: client); for the last two, "user" is IPS's submit user and "requested at" when the run was found.
EXPORT_COLUMNS = [
    ("id", "id"),
    ("requested at", "requested_at"),
    ("operation", "operation"),
    ("started by", "started_by"),
    ("company handle", "company_handle"),
    ("company", "company_id"),
    ("job", "job_name"),
    ("job handle", "job_handle"),
    ("user", "username"),
    ("IPS user type", "role"),
    ("outcome", "outcome"),
    ("message", "message"),
    ("IPS fault code", "fault_code"),
    ("IPS fault reason", "fault_reason"),
    ("sent at", "sent_at"),
    ("finished at", "finished_at"),
    ("request time (ms)", "duration_ms"),
    ("IPS run", "ips_run_name"),
    ("IPS result", "ips_result"),
    ("IPS log type", "ips_log_type"),
    ("IPS success count", "ips_success_count"),
    ("IPS warning count", "ips_warning_count"),
    ("IPS error count", "ips_error_count"),
    ("IPS duplicate count", "ips_duplicate_count"),
    ("IPS update count", "ips_update_count"),
    ("IPS total count", "ips_total_count"),
    ("IPS fatal error", "ips_fatal"),
    ("IPS start", "ips_started_at"),
    ("IPS end", "ips_ended_at"),
    ("IPS runtime (ms)", "ips_runtime_ms"),
    ("request id", "request_id"),
]

# CSV injection (OWASP): a spreadsheet runs a cell that starts with one of these
# as a formula (a job name from IPS, a fault reason or a message could), and
# finds that start past blanks and invisible characters, in the fullwidth and
# small forms (NFKC folds those to ASCII), and after a separator inside the
# cell (";" splits cells where it is the list separator).
_FORMULA_STARTS = frozenset("=+-@\u2212")  # U+2212: the minus sign, which NFKC keeps
_BLANKS = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})  # spaces, line breaks, controls, ZWSP, BOM
_SEPARATORS = frozenset(",;\t\r\n|")


def _kind(c: str) -> tuple[bool, bool, bool]:
    """What one character is to a spreadsheet: (blank, separator, formula start).

    Each character is normalised on its own (NFKC), never the cell as a whole:
    normalising "=\\u0338" together would compose it into "≠" and hide the "="
    a spreadsheet sees first."""
    folded = unicodedata.normalize("NFKC", c)
    blank = unicodedata.category(c) in _BLANKS
    return blank, folded in _SEPARATORS, not blank and folded[:1] in _FORMULA_STARTS


# The ASCII characters of each kind (NFKC leaves ASCII as it is), as regex classes.
_ASCII = [chr(i) for i in range(128)]
_ASCII_BLANKS, _ASCII_SEPARATORS, _ASCII_STARTS = (
    "[" + "".join(re.escape(c) for c in _ASCII if _kind(c)[k]) + "]" for k in range(3)
)
#: A formula start past blanks after a separator, in ASCII. Searched in the cell
#: after a ";": a formula start past blanks at the start of the cell counts too.
#: (Starting with a set, the search skips ahead to a separator in C.)
_AFTER_SEPARATOR = re.compile(f"{_ASCII_SEPARATORS}{_ASCII_BLANKS}*{_ASCII_STARTS}")


class _StandIns(dict):
    """str.translate's table: each non-ASCII character to an ASCII one of the
    same kind, so that _AFTER_SEPARATOR reads any cell. Filled as characters come (the
    slow path: one NFKC per distinct character, not per character of every
    cell), up to LIMIT of them; past it they are worked out again each time."""

    LIMIT = 20_000
    #: (blank, separator, formula start) -> the ASCII stand-in (none is both a separator and a formula start).
    ASCII_OF_KIND = {
        (True, True, False): "\n",
        (True, False, False): "\x00",
        (False, True, False): ";",
        (False, False, True): "=",
        (False, False, False): "x",
    }

    def __missing__(self, code: int) -> str:
        stand_in = self.ASCII_OF_KIND[_kind(chr(code))]
        if len(self) < self.LIMIT:
            self[code] = stand_in
        return stand_in


_STAND_INS = _StandIns()


def _may_run(text: str) -> bool:
    """Would a spreadsheet run this cell as a formula? An ASCII cell is read as
    it is; any other, with its non-ASCII characters replaced by their stand-ins."""
    if text.startswith(("\t", "\r")):
        return True
    ascii_text = text if text.isascii() else text.translate(_STAND_INS)
    # Most cells have no formula start at all: four scans in C, no regex (the ASCII starts; tested).
    if "=" not in ascii_text and "+" not in ascii_text and "-" not in ascii_text and "@" not in ascii_text:
        return False
    return _AFTER_SEPARATOR.search(";" + ascii_text) is not None


def _cell(value, zone):
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return timezone.localtime(value, zone).isoformat(timespec="milliseconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if not value.isascii():
            # Shown as code points, as on every HTML page: a name that reads one way and is another.
            value = neutralise_bidi(value)
        if _may_run(value):
            return "'" + value  # read as text; the writer quotes every cell (exporting._write_csv)
    return value


def _text_cell(value):
    """_cell of a text column's value (or None)."""
    if value is None:
        return ""
    if not value.isascii():
        value = neutralise_bidi(value)
    return "'" + value if _may_run(value) else value


class _UtcText(Func):
    """A time column as text in UTC, "YYYY-MM-DD HH:MM:SS[.ffffff]": as SQLite stores it, and
    PostgreSQL's whatever its session's DateStyle and TimeZone (_TimeCells reads it)."""

    output_field = TextField()
    template = "CAST(%(expressions)s AS text)"

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template=(
            "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"), **extra)


class _TimeCells:
    """A time column's cells from its text in UTC (_UtcText), as
    ``value.astimezone(zone).isoformat(timespec="milliseconds")`` writes them, 5–10× faster.

    Per UTC hour, the zone's local "YYYY-MM-DDTHH" and offset are worked out once: the minutes,
    seconds and milliseconds are the stored ones whenever the zone keeps one whole-hour offset
    through that hour (every zone's usual case); any other hour (a half-hour zone, a change of
    offset inside it) and any unexpected text take the slow way, parsed and converted."""

    LIMIT = 100_000

    def __init__(self, zone):
        self.zone, self.hours = zone, {}

    def __call__(self, text):
        if text is None:
            return ""
        hour = self.hours.get(text[:13])
        if hour is None:
            hour = self._hour(text[:13])
        size = len(text)
        if hour is False or size < 19 or (size > 19 and (text[19] != "." or not text[20:].isdigit())):
            return self._slow(text)
        prefix, offset = hour
        millis = (text[20:23] + "00")[:3] if size > 19 else "000"
        return f"{prefix}{text[13:19]}.{millis}{offset}"

    def _hour(self, hour: str):
        try:
            start = dt.datetime.fromisoformat(hour + ":00:00+00:00")
        except ValueError:
            return False
        local, offset = start.astimezone(self.zone), start.astimezone(self.zone).utcoffset()
        end = (start + dt.timedelta(hours=1) - dt.timedelta(microseconds=1)).astimezone(self.zone).utcoffset()
        uniform = offset == end and offset % dt.timedelta(hours=1) == dt.timedelta(0)
        entry = (local.isoformat(timespec="hours")[:13], local.isoformat()[19:]) if uniform else False
        if len(self.hours) < self.LIMIT:
            self.hours[hour] = entry
        return entry

    def _slow(self, text):
        value = dt.datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(self.zone).isoformat(timespec="milliseconds")


#: A text column's cells remembered per value up to this many (export_rows).
REMEMBERED = 50_000


def _cell_writers(model, fields: list[str], zone, stored_text_times: bool = False) -> list:
    """For each column, the function that writes its cells as _cell does, chosen once from the
    column's type instead of asked of each value (a million rows are 31 million cells); None for a
    column written as it comes (numbers: the writer writes None as "", as _cell does)."""
    writers = []
    times = _TimeCells(zone) if stored_text_times else None  # one: the columns share their hours
    for name in fields:
        kind = model._meta.get_field(name).get_internal_type() if name != "company_id" else "CharField"
        if kind in ("CharField", "TextField"):
            writers.append(_text_cell)
        elif kind in ("IntegerField", "BigIntegerField", "PositiveIntegerField", "PositiveBigIntegerField",
                      "SmallIntegerField", "PositiveSmallIntegerField", "AutoField", "BigAutoField"):
            writers.append(None)
        elif kind == "DateTimeField" and times is not None:
            writers.append(times)
        elif kind == "DateTimeField":
            # timezone.localtime without its naive check: the database gives aware times (USE_TZ).
            writers.append(lambda value, zone=zone: "" if value is None else value.astimezone(zone).isoformat(
                timespec="milliseconds"))
        else:
            writers.append(lambda value, zone=zone: _cell(value, zone))
    return writers


def export_rows(queryset, sort: Sort, company_names: dict[int, str], zone, chunk: int = 2000, split: Split | None = None,
                server_cursor: bool = False):
    """The export's rows in ``sort``'s order, as lists of CSV cells, read ``chunk`` rows a query.

    ``server_cursor`` (PostgreSQL): one query, its rows fetched ``chunk`` at a time from a
    server-side cursor (WITH HOLD in autocommit: a snapshot of the rows), which read a
    million rows 1.3x as fast as the keyset chunks (bench/export_bg.py readers). The time
    columns are read as text, in UTC (see _TimeCells); a text column's cells are remembered
    per value (names, handles, users and outcomes repeat over a million rows: a dictionary
    answers them faster than the checks)."""
    fields = [f for _, f in EXPORT_COLUMNS]
    company = fields.index("company_id")
    writers = _cell_writers(queryset.model, fields, zone, stored_text_times=True)
    times = {f.name for f in queryset.model._meta.concrete_fields if f.get_internal_type() == "DateTimeField"}
    columns = [_UtcText(f) if f in times else f for f in fields]
    if server_cursor:
        rows = ordered(queryset, sort).order_by(*sort.ordering).values_list(*columns).iterator(chunk_size=chunk)
    else:
        rows = chunks(queryset, sort, columns, chunk, split)
    texts = [(i, {}) for i, write in enumerate(writers) if write is _text_cell and i != company]
    others = [(i, write) for i, write in enumerate(writers) if write is not None and write is not _text_cell]
    names = {pk: _text_cell(name) for pk, name in company_names.items()}
    blank = _text_cell("")
    for row in rows:
        row = list(row)
        for i, known in texts:
            value = row[i]
            cell = known.get(value)
            if cell is None:
                cell = _text_cell(value)
                if len(known) < REMEMBERED:
                    known[value] = cell
            row[i] = cell
        for i, write in others:
            row[i] = write(row[i])
        row[company] = names.get(row[company], blank)
        yield row
