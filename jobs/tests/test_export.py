"""CSV export of history: who may, what it holds (written by a background task), and recorded as an action of its own."""

import csv
import datetime as dt
import io
import random
import unicodedata

import pytest
from django.db import DatabaseError, connection, transaction
from django.http import FileResponse
from django.urls import reverse
from django.utils import timezone

from jobs import csvexport, exporting, history
from jobs.services import base, exports
from jobs.models import Execution, HistoryExport, Job, Profile

from .conftest import ALL_ACTORS, ANONYMOUS, make_execution
from .pg_roles import app_role  # noqa: F401  (fixture)

URL = reverse("jobs:history_export")

#: Tasks run as they are enqueued, in this process (django-tasks' ImmediateBackend).
IMMEDIATE_TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}

# actor -> (status, exports 47's rows, exports 48's). Exporting is reading history: getJobLogs.
# Asked with a plain form: 303 to the export's progress page (its task has run: see ``ask``).
EXPORT_TABLE = {
    "IpsAdmin": (302, True, False),
    "IpsCompanyAdmin": (302, True, False),
    "IpsUser": (302, True, False),
    "WebServiceUser": (403, False, False),
    "TrialSiteAdmin": (302, True, False),
    "TrialSiteUser": (302, True, False),
    "ImagePortalAdmin": (302, True, False),
    "ImagePortalUser": (302, True, False),
    "ImagePortalContrib": (302, True, False),
    "ImagePortalContribUser": (302, True, False),
    "nomember": (403, False, False),
    "othercompany": (302, False, True),
    "admin": (302, True, True),
    "anonymous": (302, False, False),
}


@pytest.fixture(autouse=True)
def ask(client, settings, django_capture_on_commit_callbacks, tmp_path):
    """POST an export and run its task as a worker would once the request commits; the POST's answer."""
    settings.TASKS = IMMEDIATE_TASKS
    settings.EXPORTS_DIR = tmp_path / "exports"

    def ask_(url=URL, **extra):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, **extra)

    return ask_


def export_pk(response) -> int:
    assert response.status_code == 302, response.content
    return int(response["Location"].rstrip("/").split("/")[-1])


def download_text(client, response) -> str:
    """The file of the export asked for with ``response``, as the owner downloads it."""
    file = client.get(reverse("jobs:export_download", args=[export_pk(response)]))
    assert isinstance(file, FileResponse), file.content
    return b"".join(file.streaming_content).decode("utf-8")


def read_csv(client, response) -> list[dict]:
    text = download_text(client, response)
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


@pytest.fixture
def two_rows(users, synced, job):
    job48 = Job.objects.filter(company__handle="48").order_by("pk").first()
    a = make_execution(job, users["IpsUser"], "accepted")
    a.ips_result, a.ips_runtime_ms, a.ips_success_count, a.ips_error_count = "errors", 61_000, 3, 1
    a.save()
    b = make_execution(job48, users["othercompany"], "refused", fault_code=30000)
    return a, b


def test_the_export_table_covers_every_actor():
    assert sorted(EXPORT_TABLE) == sorted(ALL_ACTORS)


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_export_role_table(actor, client, login, two_rows, ask):
    login(actor)
    response = ask()
    status, sees_47, sees_48 = EXPORT_TABLE[actor]
    assert response.status_code == status
    if actor == ANONYMOUS:
        assert response["Location"].startswith(reverse("login"))
        assert not HistoryExport.objects.exists()
        return
    if status == 403:
        # Why, and no record: nothing was exported.
        reason = {"WebServiceUser": "Your role WebServiceUser in company 47 cannot see job history (getJobLogs).",
                  "nomember": "You have no role in any company"}[actor]
        assert reason in response.content.decode()
        assert not HistoryExport.objects.exists()
        return
    ids = {int(r["id"]) for r in read_csv(client, response)}
    assert (two_rows[0].pk in ids) is sees_47
    assert (two_rows[1].pk in ids) is sees_48
    export = HistoryExport.objects.get()
    assert export.username == actor.lower() and export.row_count == len(ids) and export.completed is True


def test_it_is_an_action_not_a_link(client, login, two_rows):
    login("IpsUser")
    assert client.get(URL).status_code == 405
    assert not HistoryExport.objects.exists()


def test_it_exports_the_filtered_rows_with_the_ips_result_columns(client, login, two_rows, ask):
    login("admin")
    response = ask(f"{URL}?outcome=accepted&company={two_rows[0].company_id}")
    file = client.get(reverse("jobs:export_download", args=[export_pk(response)]))
    assert file["Content-Type"] == "text/csv; charset=utf-8"
    assert file["Content-Disposition"].startswith('attachment; filename="ipsadmin-history-')
    assert file["Cache-Control"] == "no-store"
    [row] = read_csv(client, response)
    a = two_rows[0]
    assert row["id"] == str(a.pk) and row["job"] == "My Test Job" and row["company"] == "Demo Company"
    assert (row["outcome"], row["IPS result"], row["IPS runtime (ms)"]) == ("accepted", "errors", "61000")
    assert (row["IPS success count"], row["IPS error count"], row["request id"]) == ("3", "1", a.request_id)
    assert list(row) == [h for h, _ in csvexport.EXPORT_COLUMNS]


def test_the_export_is_recorded_with_who_what_and_how_many(client, login, two_rows, ask):
    login("IpsUser")
    response = ask(f"{URL}?outcome=accepted&user=IPSUSER&sort=-ips_runtime", REMOTE_ADDR="192.0.2.7")
    rows = read_csv(client, response)
    export = HistoryExport.objects.get()
    assert export.username == "ipsuser" and export.user.username == "ipsuser"
    assert export.filters == {"user": "IPSUSER", "outcome": "accepted", "sort": "-ips_runtime"}
    assert (export.row_count, export.completed) == (len(rows), True) == (1, True)
    assert export.request_id == response["X-Request-ID"] and export.client_ip == "192.0.2.7"
    assert export.finished_at >= export.at


def test_an_export_that_breaks_off_is_recorded_so(users, settings):
    """The file cannot be written (here: its directory is a file): the record is completed as not complete."""
    settings.EXPORTS_DIR.parent.mkdir(parents=True, exist_ok=True)
    settings.EXPORTS_DIR.write_text("not a directory")
    with transaction.atomic():
        file = exports.request_export(users["IpsUser"], {}, base.RequestInfo("req-12345678"), "UTC")
    exporting.run_export(file.pk)
    record = HistoryExport.objects.get()
    assert (record.row_count, record.completed) == (0, False) and record.finished_at is not None


def test_a_whole_export_is_recorded_complete(users, job):
    for _ in range(3):
        make_execution(job, users["IpsUser"], "denied")
    file = exports.request_export(users["IpsUser"], {}, base.RequestInfo("req-12345678"), "UTC")
    exporting.run_export(file.pk)
    record = HistoryExport.objects.get()
    assert (record.row_count, record.completed) == (3, True)
    file.refresh_from_db()
    assert exports.file_path(file).read_bytes().count(b"\r\n") == 4


def test_cells_a_spreadsheet_would_run_are_defused(client, login, users, job, ask):
    Job.objects.filter(pk=job.pk).update(name='=HYPERLINK("http://evil.example/","x")')
    job.refresh_from_db()
    make_execution(job, users["IpsUser"], "denied", message="+1 cmd|' /C calc'!A0")
    login("IpsUser")
    [row] = read_csv(client, ask())
    assert row["job"].startswith("'=HYPERLINK(") and row["message"].startswith("'+1 cmd")


def test_times_are_in_the_users_zone(client, login, users, job, ask):
    Profile.objects.create(user=users["IpsUser"], time_zone="Asia/Tokyo")
    at = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)
    make_execution(job, users["IpsUser"], "denied", requested_at=at)
    login("IpsUser")
    [row] = read_csv(client, ask())
    assert row["requested at"] == "2026-11-29T21:00:00.000+09:00"


def test_invalid_filters_are_refused_not_ignored(client, login, two_rows):
    login("IpsUser")
    response = client.post(f"{URL}?from=2026-11-20&to=2026-11-10")
    assert response.status_code == 400 and "The end comes before the start." in response.content.decode()
    assert not HistoryExport.objects.exists()


def test_it_reads_the_rows_a_chunk_at_a_time(client, login, users, job, django_assert_max_num_queries, monkeypatch):
    """Keyset chunks: a query per chunk of rows, never all rows at once, never an OFFSET."""
    for i in range(7):
        make_execution(job, users["IpsUser"], "denied", requested_at=timezone.now() - dt.timedelta(minutes=i))
    rows = list(csvexport.export_rows(Execution.objects.all(), history.DEFAULT_SORT, {}, dt.timezone.utc, chunk=3))
    assert [int(r[0]) for r in rows] == list(Execution.objects.order_by("-requested_at", "-id").values_list("pk", flat=True))
    with django_assert_max_num_queries(3) as queries:
        list(csvexport.export_rows(Execution.objects.all(), history.DEFAULT_SORT, {}, dt.timezone.utc, chunk=3))
    assert all("OFFSET" not in q["sql"] for q in queries.captured_queries)


# --- The record itself: added, completed once, never changed or deleted ---------------------------


@pytest.fixture
def export(users):
    record = exports.start_export(users["IpsUser"], {"outcome": "accepted"}, base.RequestInfo("req-12345678"))
    return HistoryExport.objects.get(pk=record.pk)


def test_an_export_record_is_completed_once(export):
    exports.finish_export(export, 12, True)
    export = HistoryExport.objects.get(pk=export.pk)
    with pytest.raises(PermissionError):
        exports.finish_export(export, 13, True)
    export.filters = {}
    with pytest.raises(PermissionError):
        export.save()
    assert HistoryExport.objects.get(pk=export.pk).row_count == 12


def test_an_export_record_is_never_deleted_nor_bulk_changed(export):
    with pytest.raises(PermissionError):
        export.delete()
    with pytest.raises(PermissionError):
        HistoryExport.objects.all().delete()
    with pytest.raises(PermissionError):
        HistoryExport.objects.update(row_count=1)
    assert HistoryExport.objects.count() == 1


def test_deleting_the_user_keeps_the_record(export, users):
    users["IpsUser"].delete()
    export = HistoryExport.objects.get(pk=export.pk)
    assert export.user is None and export.username == "ipsuser"


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: its trigger guards the record")
def test_postgresql_refuses_to_change_or_delete_an_export_record(export):
    exports.finish_export(export, 5, True)
    for sql in (
        "UPDATE jobs_historyexport SET row_count = 1",
        "UPDATE jobs_historyexport SET filters = '{}'",
        "DELETE FROM jobs_historyexport",
    ):
        with pytest.raises(DatabaseError, match="jobs_historyexport is a record"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql)
    assert HistoryExport.objects.get().row_count == 5


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: its trigger guards the record")
def test_postgresql_lets_a_running_export_be_completed_and_its_user_deleted(export, users):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE jobs_historyexport SET row_count = 3, completed = true, finished_at = now()")
    users["IpsUser"].delete()
    assert HistoryExport.objects.get().user_id is None


_FORGE_EXPORT = ("INSERT INTO jobs_historyexport (at, user_id, username, filters, row_count, completed, finished_at,"
                 " request_id) VALUES (%s, %s, 'ipsuser', '{}', %s, %s, %s, 'forged') RETURNING id")


@pytest.mark.postgres
@pytest.mark.parametrize("at, rows, completed, finished", [
    (0, 0, True, 0),          # a finished export nobody made
    (0, 5, None, None),
    (-3, None, None, None),   # one that started three days ago
    (1, None, None, None),
])
def test_the_app_role_cannot_forge_an_export_record(app_role, users, at, rows, completed, finished):
    now = timezone.now()
    when = now + dt.timedelta(days=at)
    with pytest.raises(DatabaseError, match="jobs_historyexport is a record"):
        app_role.run(_FORGE_EXPORT, [when, users["IpsUser"].pk, rows, completed,
                                     None if finished is None else now + dt.timedelta(days=finished)])
    assert not HistoryExport.objects.exists()


@pytest.mark.postgres
def test_the_app_role_records_an_export_as_the_service_does(app_role, users):
    with app_role.acting():
        export = exports.start_export(users["IpsUser"], {"outcome": "accepted"}, base.RequestInfo("req-12345678"))
        exports.finish_export(export, 7, True)
    with pytest.raises(DatabaseError, match="jobs_historyexport is a record"):
        app_role.run("UPDATE jobs_historyexport SET user_id = NULL")
    assert HistoryExport.objects.get().row_count == 7


def test_an_export_loaded_in_part_cannot_be_rewritten(export):
    exports.finish_export(export, 12, True)
    partial = HistoryExport.objects.only("id").get(pk=export.pk)
    partial.row_count = 0
    with pytest.raises(PermissionError):
        partial.save()
    assert HistoryExport.objects.get(pk=export.pk).row_count == 12


def test_the_admin_shows_exports_read_only(client, login, export):
    login("admin")
    admin_client = client
    assert admin_client.get(reverse("admin:jobs_historyexport_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:jobs_historyexport_change", args=[export.pk])).status_code == 200
    assert admin_client.get(reverse("admin:jobs_historyexport_add")).status_code == 403
    assert admin_client.post(reverse("admin:jobs_historyexport_delete", args=[export.pk]), {"post": "yes"}).status_code == 403
    assert HistoryExport.objects.filter(pk=export.pk).exists()


@pytest.mark.parametrize("params", [{"to": "9999-12-31"}, {"from": "0001-01-01"}], ids=["to", "from"])
def test_dates_at_the_ends_of_the_calendar_refuse_the_export_clearly(params, client, login, two_rows):
    login("admin")
    client.cookies["tz"] = "Pacific/Kiritimati"
    response = client.post(URL + "?" + "&".join(f"{k}={v}" for k, v in params.items()))
    assert response.status_code == 400
    assert "Choose a date from 1900-01-01 to 9999-12-30." in response.content.decode()
    assert not HistoryExport.objects.exists()


# A cell as IPS or a user gave it -> as the export writes it. A spreadsheet runs a cell
# that starts with a formula character, or one it finds after blanks, invisible characters
# or a separator (OWASP, CSV injection); bidi controls show as their code points, as on
# the HTML pages. Every text cell is quoted, so a separator inside one splits nothing.
CSV_CELLS = [
    ('=HYPERLINK("http://evil.example/","x")', '\'=HYPERLINK("http://evil.example/","x")'),
    ("+1+1", "'+1+1"),
    ("-1+1", "'-1+1"),
    ("@SUM(1+1)", "'@SUM(1+1)"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
    (" =1+1", "' =1+1"),
    ("\u00a0=1+1", "'\u00a0=1+1"),
    ("\n=1+1", "'\n=1+1"),
    ("\u200b=1+1", "'\u200b=1+1"),
    ("\u3000+1+1", "'\u3000+1+1"),
    ("\ufeff=1+1", "'\ufeff=1+1"),
    ("\uff1d1+1", "'\uff1d1+1"),  # ＝ fullwidth
    ("\uff0b1+1", "'\uff0b1+1"),  # ＋
    ("\uff0d1+1", "'\uff0d1+1"),  # －
    ("\uff20SUM(1+1)", "'\uff20SUM(1+1)"),  # ＠
    ("\ufe661+1", "'\ufe661+1"),  # ﹦ small equals
    ("\u22121+1", "'\u22121+1"),  # − minus sign
    ("Report;=1+1", "'Report;=1+1"),
    ('Report";=1+1', '\'Report";=1+1'),
    ("Report,=1+1", "'Report,=1+1"),
    ("Report; +1+1", "'Report; +1+1"),
    ("Report\t@SUM(1)", "'Report\t@SUM(1)"),
    ("Report\n-1+1", "'Report\n-1+1"),
    ("Report\uff1b\uff1d1+1", "'Report\uff1b\uff1d1+1"),  # ；＝ fullwidth
    ("Invoice \u202egpj.exe", "Invoice [U+202E]gpj.exe"),
    ("\u2066=1+1\u2069", "[U+2066]=1+1[U+2069]"),
    ("a\u200fb\u061cc", "a[U+200F]b[U+061C]c"),
    # Left as they are.
    ("My Test Job", "My Test Job"),
    ("Café Zürich & Søn", "Café Zürich & Søn"),
    ("a=b", "a=b"),
    ("1+1", "1+1"),
    ("Q3 - summary, final", "Q3 - summary, final"),
    (" leading blank", " leading blank"),
    ("", ""),
]


@pytest.mark.parametrize("raw, written", CSV_CELLS, ids=[repr(raw) for raw, _ in CSV_CELLS])
def test_each_cell_is_written_so_no_spreadsheet_runs_or_reorders_it(raw, written, client, login, users, job, ask):
    make_execution(job, users["IpsUser"], "denied", job_name=raw, fault_reason=raw, message=raw)
    login("IpsUser")
    text = download_text(client, ask())
    [row] = list(csv.DictReader(io.StringIO(text[1:])))
    assert (row["job"], row["IPS fault reason"], row["message"]) == (written, written, written)
    # Every text cell in quotes: a separator inside one (";" in a locale that splits on it) splits nothing.
    quoted = '"' + written.replace('"', '""') + '"'
    assert text.count(quoted) >= 3, text


def test_the_header_and_numbers_stay_plain_values(client, login, two_rows, ask):
    login("admin")
    rows = read_csv(client, ask())
    assert {r["IPS fault code"] for r in rows} == {"", "30000"}
    assert {r["IPS runtime (ms)"] for r in rows} == {"61000", ""}


# --- How a cell is judged: the fast path gives exactly what the per-character reading gave ---------


def _may_run_per_character(text: str) -> bool:
    """The reading csvexport._may_run must agree with: every character of the
    cell normalised (NFKC) on its own, one at a time (the export at a3faf77)."""
    blanks, starts, separators = {"Zs", "Zl", "Zp", "Cc", "Cf"}, set("=+-@\u2212"), set(",;\t\r\n|")

    def formula_start(at):
        while at < len(text) and unicodedata.category(text[at]) in blanks:
            at += 1
        return at < len(text) and unicodedata.normalize("NFKC", text[at])[:1] in starts

    if text.startswith(("\t", "\r")) or formula_start(0):
        return True
    return any(unicodedata.normalize("NFKC", c) in separators and formula_start(i + 1) for i, c in enumerate(text))


# Each kind of character, ASCII and not: blanks and invisibles, separators, formula starts
# (fullwidth, small, superscript, subscript, "==" and the minus sign), combining marks, letters.
_ALPHABET = (
    " \t\r\n\x00\x0b\x7f\u00a0\u2028\u2029\u200b\u200e\u202e\u2066\ufeff\u3000\u0085\u180e"
    ",;|\uff0c\uff1b\uff5c\ufe50\ufe54\u037e"
    "=+-@\u2212\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b\u207a\u207b\u207c\u208a\u208b\u208c\u2a75\u2a76"
    "\u0338\u0301\u20d2aZ1'\"éß\u00bd\ufb01データ"
)


def _cells_to_judge():
    yield from (raw for raw, _ in CSV_CELLS)
    # A combining mark after a formula start: the cell as a whole normalises to "≠",
    # yet a spreadsheet sees the "=" first.
    yield from ["=\u0338 1", "a;=\u0338", "\uff1d\u0338", "+\u0301", "a\u037e-1", "x\u2a75y", "\u00a0\u207a1"]
    rnd = random.Random(20261129)
    for _ in range(5000):
        yield "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randrange(1, 9)))


def test_the_fast_path_judges_every_cell_as_the_per_character_reading_does():
    cells = list(_cells_to_judge())
    assert sum(map(_may_run_per_character, cells)) > 1000  # the mix has both kinds
    assert [c for c in cells if csvexport._may_run(c) != _may_run_per_character(c)] == []


def test_every_character_outside_ascii_has_an_ascii_stand_in_of_its_kind():
    """All of Unicode, in this Python's version of it: the table covers every
    character, and each stand-in is a blank, separator or formula start as it is."""
    table = csvexport._StandIns()
    table.LIMIT = 0  # nothing kept: this test leaves no table of a million characters behind
    everything = "".join(map(chr, range(128, 0x110000)))
    stand_ins = everything.translate(table)
    assert stand_ins.isascii() and len(stand_ins) == len(everything)
    assert len(table) == 0
    # Each character got the stand-in of its kind (translate would have failed on a kind
    # without one, such as a formula start that is also a separator), and each is of that kind.
    for kind, ascii_ in csvexport._StandIns.ASCII_OF_KIND.items():
        assert csvexport._kind(ascii_) == kind, (kind, ascii_)


def test_the_quick_check_looks_for_every_ascii_formula_start():
    """_may_run skips the regex when none of "=", "+", "-", "@" is in the cell: those are all the ASCII ones."""
    assert {chr(i) for i in range(128) if csvexport._kind(chr(i))[2]} == set("=+-@")


def test_the_table_of_stand_ins_stays_bounded():
    table = csvexport._StandIns()
    table.LIMIT = 3
    assert "\uff1da\u00a0b\uff1bc\u00e9\u00e8".translate(table) == "=x\x00x;xxx"
    assert len(table) == 3
    assert "\uff1d\u00e8".translate(table) == "=x"
