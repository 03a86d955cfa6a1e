"""The history export as a background task: queued by the request, written by a worker with its progress,
downloaded by its owner only, kept a while, then deleted; failures said plainly, dead workers noticed."""

import csv
import datetime as dt
import io

import pytest
from django.db import DatabaseError, connection
from django.http import FileResponse
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from jobs import csvexport, exporting, history
from jobs.models import Chore, Execution, ExportFile, HistoryExport, Membership
from jobs.services import base, chores, exports

from .conftest import ALL_ACTORS, ANONYMOUS, make_execution
from .pg_roles import app_role  # noqa: F401  (fixture)
from .test_export import CSV_CELLS, IMMEDIATE_TASKS, URL

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def exports_dir(settings, tmp_path):
    settings.EXPORTS_DIR = tmp_path / "exports"
    return settings.EXPORTS_DIR


@pytest.fixture
def rows(users, job):
    return [make_execution(job, users["IpsUser"], "denied", requested_at=dt.datetime(2026, 11, 29, 12, i, tzinfo=dt.UTC))
            for i in range(5)]


def ask(user, filters=None, zone="UTC") -> ExportFile:
    return exports.request_export(user, filters or {}, base.RequestInfo("req-12345678"), zone)


def progress_url(file):
    return reverse("jobs:export_progress", args=[file.pk])


def download_url(file):
    return reverse("jobs:export_download", args=[file.pk])


# --- Asking: the request records and queues, and answers at once with the panel ---------------------


def test_asking_queues_the_task_and_answers_with_a_polled_panel(client, login, rows, django_capture_on_commit_callbacks):
    login("IpsUser")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{URL}?outcome=denied", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    file = ExportFile.objects.get()
    assert file.state == "queued" and file.export.filters == {"outcome": "denied"} and file.time_zone == "UTC"
    assert f'hx-get="{progress_url(file)}"' in html and 'hx-trigger="every 1s"' in html
    assert "Waiting for a background worker" in html
    # Queued in the database backend (settings.TASKS), for `manage.py db_worker`: nothing ran in the request.
    task = DBTaskResult.objects.get()
    assert task.task_path == "jobs.tasks.export_history" and task.args_kwargs["args"] == [file.pk]
    assert HistoryExport.objects.get().completed is None


def test_without_htmx_the_progress_has_a_page_of_its_own(client, login, rows):
    login("IpsUser")
    response = client.post(URL)
    file = ExportFile.objects.get()
    assert response.status_code == 302 and response["Location"] == progress_url(file)
    page = client.get(progress_url(file)).content.decode()
    # No meta refresh (CSP and a11y): a link asks again.
    assert "Check again" in page and f'href="{progress_url(file)}"' in page


def test_the_history_page_shows_the_latest_export(client, login, rows):
    login("IpsUser")
    assert 'hx-get="/history/exports/latest"' in client.get(reverse("jobs:history")).content.decode()
    assert client.get(reverse("jobs:export_latest"), **HTMX).content.decode() == '<div id="export-panel"></div>'
    file = ask(rows[0].user)
    exporting.run_export(file.pk)
    assert "Ready: 5 rows." in client.get(reverse("jobs:export_latest"), **HTMX).content.decode()


# --- The worker: the same bytes as the streamed export, progress every N rows -----------------------


def _streamed(queryset, names) -> bytes:
    """What the streamed export (views/history.py before issue 18) sent for these rows, byte for byte."""

    class Echo:
        def write(self, value):
            return value

    header = [h for h, _ in csvexport.EXPORT_COLUMNS]
    fields = [f for _, f in csvexport.EXPORT_COLUMNS]
    company = fields.index("company_id")

    def lines_():  # csvexport.export_rows before issue 18: _cell asked of every value
        for row in history.chunks(queryset, history.DEFAULT_SORT, fields, 2000):
            cells = [csvexport._cell(v, dt.UTC) for v in row]
            cells[company] = csvexport._cell(names.get(row[company], ""), dt.UTC)
            yield cells

    lines = lines_()
    cells = csv.writer(Echo(), quoting=csv.QUOTE_NONNUMERIC)
    text = "\ufeff" + csv.writer(Echo()).writerow(header) + "".join(cells.writerow(row) for row in lines)
    return text.encode("utf-8")


def test_the_file_is_byte_for_byte_what_the_streamed_export_wrote(client, login, users, job):
    for i, (raw, _) in enumerate(CSV_CELLS):
        make_execution(job, users["IpsUser"], "denied", job_name=raw, fault_reason=raw, message=raw,
                       requested_at=dt.datetime(2026, 11, 29, tzinfo=dt.UTC) + dt.timedelta(seconds=i))
    # Every kind of column filled: numbers, times, a yes/no, a run's IPS result.
    run = make_execution(job, users["IpsUser"], "accepted", fault_code=30000,
                         requested_at=dt.datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=dt.UTC))
    run.ips_result, run.ips_runtime_ms, run.ips_success_count, run.ips_fatal = "errors", 61_000, 3, True
    run.ips_started_at = dt.datetime(2026, 11, 30, 1, 2, 4, tzinfo=dt.UTC)
    run.save()
    file = ask(users["IpsUser"])
    exporting.run_export(file.pk)
    login("IpsUser")
    response = client.get(download_url(file))
    written = b"".join(response.streaming_content)
    assert written == _streamed(history.visible_to(users["IpsUser"], [job.company_id]), {job.company_id: job.company.name})
    assert written.count(b"\r\n") >= len(CSV_CELLS) + 2 and b'"errors"' in written and b'"yes"' in written


def test_progress_is_reported_every_n_rows_against_a_counted_total(users, rows, settings, monkeypatch):
    settings.EXPORTS_PROGRESS_EVERY = 2
    seen = []
    real = exporting.export_rows

    def watched(*args, **kwargs):
        for row in real(*args, **kwargs):
            file = ExportFile.objects.get()
            seen.append((file.state, file.rows_written, file.rows_total))
            yield row

    monkeypatch.setattr(exporting, "export_rows", watched)
    file = ask(users["IpsUser"])
    assert exporting.run_export(file.pk).startswith("ready: 5 rows")
    # Counted before the first row; reported after rows 2 and 4, not at every row.
    assert seen == [("running", 0, 5), ("running", 0, 5), ("running", 2, 5), ("running", 2, 5), ("running", 4, 5)]
    file.refresh_from_db()
    assert (file.state, file.rows_written, file.rows_total, file.percent) == ("ready", 5, 5, 100)
    assert file.size == exports.file_path(file).stat().st_size and file.path.endswith(".csv")
    assert file.expires_at == file.finished_at + settings.EXPORTS_KEEP
    record = HistoryExport.objects.get()
    assert (record.row_count, record.completed) == (5, True)


def test_the_panel_counts_and_stops_polling_when_finished(client, login, users, rows):
    file = ask(users["IpsUser"])
    login("IpsUser")
    ExportFile.objects.filter(pk=file.pk).update(state="running", rows_total=5, rows_written=2)
    running = client.get(progress_url(file), **HTMX)
    assert running.status_code == 200
    html = running.content.decode()
    assert "2 of 5 rows written" in html and 'max="5" value="2"' in html and 'aria-label="Export progress"' in html
    assert 'hx-trigger="every 1s"' in html
    ExportFile.objects.filter(pk=file.pk).update(state="queued", rows_total=None, rows_written=0)
    exporting.run_export(file.pk)
    done = client.get(progress_url(file), **HTMX)
    assert done.status_code == 286  # htmx stops polling
    html = done.content.decode()
    assert "Ready: 5 rows." in html and f'href="{download_url(file)}"' in html and "hx-trigger" not in html


def test_the_worker_reads_with_the_filters_and_the_zone_of_the_request(users, rows, job):
    refused = make_execution(job, users["IpsUser"], "refused", fault_code=30000,
                             requested_at=dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC))
    file = ask(users["IpsUser"], {"outcome": "refused"}, zone="Asia/Tokyo")
    exporting.run_export(file.pk)
    [row] = list(csv.DictReader(io.StringIO(exports.file_path(ExportFile.objects.get()).read_text("utf-8-sig"))))
    assert row["id"] == str(refused.pk) and row["requested at"] == "2026-11-29T21:00:00.000+09:00"


def test_a_second_delivery_of_the_task_does_nothing(users, rows):
    file = ask(users["IpsUser"])
    exporting.run_export(file.pk)
    assert exporting.run_export(file.pk).startswith("not queued")
    assert HistoryExport.objects.get().row_count == 5 and len(list(exports.file_path(file).parent.iterdir())) == 1


def test_a_real_task_backend_runs_it(client, login, rows, settings, django_capture_on_commit_callbacks):
    """Through the Tasks API (ImmediateBackend): enqueued after the commit, run, ready."""
    settings.TASKS = IMMEDIATE_TASKS
    login("IpsUser")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(URL, **HTMX)
    assert ExportFile.objects.get().state == "ready"


# --- Download: the owner only --------------------------------------------------------------------------

# actor -> status of the progress panel and of the download of IpsUser's export.
OWNER_TABLE = {actor: (404, 404) for actor in ALL_ACTORS}
OWNER_TABLE.update({"IpsUser": (200, 200), "admin": (404, 404), ANONYMOUS: (302, 302)})


def test_the_owner_table_covers_every_actor():
    assert sorted(OWNER_TABLE) == sorted(ALL_ACTORS)


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_only_the_user_who_asked_sees_or_downloads_it(actor, client, login, users, rows):
    file = ask(users["IpsUser"])
    exporting.run_export(file.pk)
    login(actor)
    panel, download = client.get(progress_url(file)), client.get(download_url(file))
    assert (panel.status_code, download.status_code) == OWNER_TABLE[actor]
    if actor == "IpsUser":
        assert isinstance(download, FileResponse)
        assert download["Content-Disposition"] == 'attachment; filename="ipsadmin-history-' + (
            file.export.at.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S") + '.csv"')
        assert download["Cache-Control"] == "no-store" and download["Content-Type"] == "text/csv; charset=utf-8"
    elif actor == ANONYMOUS:
        assert download["Location"].startswith(reverse("login"))


def test_a_file_not_ready_is_not_downloaded(client, login, users, rows):
    file = ask(users["IpsUser"])
    login("IpsUser")
    response = client.get(download_url(file))
    assert response.status_code == 409 and "Waiting for a background worker" in response.content.decode()


# --- Kept a while, then deleted ----------------------------------------------------------------------


def test_past_its_keep_the_download_says_expired_and_the_file_is_gone(client, login, users, rows, settings,
                                                                     dashboard_clock):
    file = ask(users["IpsUser"])
    exporting.run_export(file.pk)
    file.refresh_from_db()
    path = exports.file_path(file)
    login("IpsUser")
    dashboard_clock.advance(settings.EXPORTS_KEEP - dt.timedelta(minutes=1))
    assert client.get(download_url(file)).status_code == 200
    dashboard_clock.advance(dt.timedelta(minutes=2))
    response = client.get(download_url(file))
    assert response.status_code == 410 and "This export has expired" in response.content.decode()
    assert not path.exists() and ExportFile.objects.get().state == "expired"


def test_the_cleanup_chore_deletes_files_past_their_keep(users, rows, settings, dashboard_clock,
                                                         django_capture_on_commit_callbacks):
    old = ask(users["IpsUser"])
    exporting.run_export(old.pk)
    dashboard_clock.advance(settings.EXPORTS_KEEP / 2)
    kept = ask(users["IpsUser"])
    exporting.run_export(kept.pk)
    kept.refresh_from_db(), old.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False):
        chores.start_chore(chores.CLEAN_EXPORTS)
    dashboard_clock.advance(settings.EXPORTS_KEEP / 2 + dt.timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        result = chores.clean_exports_chore(Chore.objects.get(name=chores.CLEAN_EXPORTS).token)
    assert result == "1 export files expired, 0 unfinished exports failed"
    assert len(scheduled) == 1  # its next run
    assert not exports.file_path(old).exists() and exports.file_path(kept).exists()
    assert ExportFile.objects.get(pk=old.pk).state == "expired" and ExportFile.objects.get(pk=kept.pk).state == "ready"
    # The record stays: who asked for what.
    assert HistoryExport.objects.filter(completed=True).count() == 2


def test_every_chore_has_its_task():
    from jobs import tasks

    assert set(tasks.CHORES) == set(chores.NAMES) and chores.CLEAN_EXPORTS in chores.NAMES


# --- Failures: said plainly, recorded as not completed, nothing left running ----------------------------


def test_a_file_that_cannot_be_written_fails_plainly(client, login, users, rows, exports_dir):
    exports_dir.parent.mkdir(parents=True, exist_ok=True)
    exports_dir.write_text("a file where the directory should be")  # root ignores modes: this fails for anyone
    file = ask(users["IpsUser"])
    assert exporting.run_export(file.pk).startswith("failed")
    login("IpsUser")
    response = client.get(progress_url(file), **HTMX)
    assert response.status_code == 286
    assert "The export failed: The file could not be written on the server" in response.content.decode()
    record = HistoryExport.objects.get()
    assert (record.completed, record.finished_at is not None) == (False, True)


def test_a_database_error_midway_fails_and_leaves_no_file(users, rows, settings, monkeypatch, exports_dir):
    settings.EXPORTS_PROGRESS_EVERY = 2
    real = exporting.export_rows

    def breaks(*args, **kwargs):
        for i, row in enumerate(real(*args, **kwargs)):
            if i == 3:
                raise DatabaseError("server closed the connection unexpectedly")
            yield row

    monkeypatch.setattr(exporting, "export_rows", breaks)
    file = ask(users["IpsUser"])
    exporting.run_export(file.pk)
    file.refresh_from_db()
    assert (file.state, file.error, file.rows_written) == ("failed", exports.DATABASE_FAILED, 3)
    assert list(exports_dir.iterdir()) == []  # the partial file removed
    record = HistoryExport.objects.get()
    assert (record.row_count, record.completed) == (3, False)


def test_a_user_who_lost_the_right_to_read_gets_no_file(users, rows):
    file = ask(users["IpsUser"])
    Membership.objects.filter(user=users["IpsUser"]).delete()
    exporting.run_export(file.pk)
    file.refresh_from_db()
    assert (file.state, file.error) == ("failed", exports.NO_LONGER_ALLOWED)
    assert HistoryExport.objects.get().completed is False


def test_a_worker_that_stopped_reporting_is_said_to_have_stopped(client, login, users, rows, settings, dashboard_clock):
    file = ask(users["IpsUser"])
    ExportFile.objects.filter(pk=file.pk).update(state="running", rows_total=5, rows_written=2,
                                                 updated_at=dashboard_clock.now())
    login("IpsUser")
    dashboard_clock.advance(settings.EXPORTS_STALE / 2)
    assert client.get(progress_url(file), **HTMX).status_code == 200  # still taken for alive
    dashboard_clock.advance(settings.EXPORTS_STALE / 2 + dt.timedelta(seconds=1))
    response = client.get(progress_url(file), **HTMX)
    assert response.status_code == 286
    assert "The worker stopped before the file was finished." in response.content.decode()
    record = HistoryExport.objects.get()
    assert (record.row_count, record.completed) == (2, False)


def test_a_worker_taken_for_dead_stops_and_keeps_nothing(users, rows, settings, monkeypatch, exports_dir):
    """Slow, not dead: the panel settled it as failed meanwhile; its next report finds that and it stops."""
    settings.EXPORTS_PROGRESS_EVERY = 2
    real = exporting.export_rows

    def slow(*args, **kwargs):
        for i, row in enumerate(real(*args, **kwargs)):
            if i == 1:
                exports.settle_stale(ExportFile.objects.get(), dt.datetime.now(dt.UTC) + 2 * settings.EXPORTS_STALE)
            yield row

    monkeypatch.setattr(exporting, "export_rows", slow)
    file = ask(users["IpsUser"])
    assert exporting.run_export(file.pk) == "abandoned"
    file.refresh_from_db()
    assert (file.state, file.error) == ("failed", exports.WORKER_STOPPED)
    assert list(exports_dir.iterdir()) == []
    assert HistoryExport.objects.get().completed is False  # completed once, by the settle


def test_an_export_never_taken_fails_after_its_keep(users, rows, settings, dashboard_clock):
    file = ask(users["IpsUser"])
    dashboard_clock.advance(settings.EXPORTS_KEEP + dt.timedelta(seconds=1))
    assert exports.clean_exports() == "0 export files expired, 1 unfinished exports failed"
    file.refresh_from_db()
    assert (file.state, file.error) == ("failed", exports.NOT_STARTED)
    assert HistoryExport.objects.get().completed is False


# --- PostgreSQL: the app's role of docs/deploy.md does it all --------------------------------------


@pytest.mark.postgres
def test_the_app_role_asks_writes_and_cleans_up(app_role, users, rows, settings):
    with app_role.acting():
        file = ask(users["IpsUser"])
        assert exporting.run_export(file.pk).startswith("ready: 5 rows")
        exports.clean_exports(dt.datetime.now(dt.UTC) + settings.EXPORTS_KEEP + dt.timedelta(seconds=1))
    file.refresh_from_db()
    assert file.state == "expired" and HistoryExport.objects.get().completed is True


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_the_database_refuses_a_ready_file_without_a_name(users, rows):
    file = ask(users["IpsUser"])
    with pytest.raises(DatabaseError, match="exportfile_ready_has_file"):
        ExportFile.objects.filter(pk=file.pk).update(state="ready")


def test_the_admin_shows_each_exports_file_state(client, login, users, rows):
    ready = ask(users["IpsUser"])
    exporting.run_export(ready.pk)
    failed = ask(users["IpsUser"])
    ExportFile.objects.filter(pk=failed.pk).update(state="failed", error=exports.WORKER_STOPPED)
    login("admin")
    html = client.get(reverse("admin:jobs_historyexport_changelist")).content.decode()
    assert "ready: " in html and "failed: The worker stopped before the file was finished." in html
    assert "ready: " in client.get(reverse("admin:jobs_historyexport_change", args=[ready.pk])).content.decode()


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: its server-side cursors")
@pytest.mark.parametrize("sort", ["", "-ips_runtime", "request_time"])
def test_the_server_side_cursor_writes_what_the_keyset_chunks_write(sort, users, job, django_assert_num_queries):
    for i in range(9):
        run = make_execution(job, users["IpsUser"], "accepted", requested_at=dt.datetime(2026, 11, 29, i, tzinfo=dt.UTC),
                             duration_ms=i % 3 * 100 or None)
        run.ips_result, run.ips_runtime_ms = "ok", (i % 4) * 1000 or None
        run.save()
    chosen = history.SORTS.get(sort, history.DEFAULT_SORT)
    keyset = list(csvexport.export_rows(Execution.objects.all(), chosen, {}, dt.UTC, chunk=2))
    with django_assert_num_queries(1):  # the DECLARE; its FETCHes are no queries of Django's
        cursor = list(csvexport.export_rows(Execution.objects.all(), chosen, {}, dt.UTC, chunk=2, server_cursor=True))
    assert cursor == keyset and len(keyset) >= 6


def test_the_cleanup_deletes_what_a_killed_worker_left(users, rows, settings, exports_dir, dashboard_clock):
    exports_dir.mkdir(parents=True)
    left = exports_dir / "history-7-0123456789abcdef.csv.part"
    left.write_text("id\r\n1\r\n")
    exports.clean_exports()
    assert left.exists()  # it may be a live worker's
    dashboard_clock.advance(settings.EXPORTS_KEEP + dt.timedelta(seconds=1))
    exports.clean_exports()
    assert not left.exists()


# --- Found in review: roles change, files outlive workers, one export at a time ------------------------


def test_a_user_who_lost_the_role_no_longer_downloads_the_file(client, login, users, rows):
    file = ask(users["IpsUser"])
    exporting.run_export(file.pk)
    file.refresh_from_db()
    assert file.companies == [rows[0].company_id]
    login("IpsUser")
    assert client.get(download_url(file)).status_code == 200
    Membership.objects.filter(user=users["IpsUser"], company_id=rows[0].company_id).delete()
    response = client.get(download_url(file))
    assert response.status_code == 403 and "Your roles changed" in response.content.decode()


def test_asking_again_while_one_runs_shows_that_one(users, rows):
    first = ask(users["IpsUser"])
    assert ask(users["IpsUser"], {"outcome": "denied"}).pk == first.pk
    assert ExportFile.objects.count() == 1 and HistoryExport.objects.count() == 1
    exporting.run_export(first.pk)
    assert ask(users["IpsUser"]).pk != first.pk  # finished: a new one


def test_the_file_is_readable_by_the_apps_user_and_its_group_only(users, rows):
    # The group: nginx's, when it sends the file (EXPORTS_ACCEL_REDIRECT); others nothing.
    file = ask(users["IpsUser"])
    exporting.run_export(file.pk)
    file.refresh_from_db()
    assert exports.file_path(file).stat().st_mode & 0o777 == 0o640


def test_a_file_missing_on_this_server_is_an_error_not_expired(client, login, users, rows):
    file = ask(users["IpsUser"])
    exporting.run_export(file.pk)
    file.refresh_from_db()
    exports.file_path(file).unlink()
    login("IpsUser")
    response = client.get(download_url(file))
    assert response.status_code == 500 and "not on this server" in response.content.decode()
    assert ExportFile.objects.get().state == "ready"


def test_behind_nginx_the_download_is_handed_over(client, login, users, rows, settings):
    settings.EXPORTS_ACCEL_REDIRECT = "/_exports/"
    file = ask(users["IpsUser"])
    exporting.run_export(file.pk)
    file.refresh_from_db()
    login("IpsUser")
    response = client.get(download_url(file))
    assert response.status_code == 200 and response["X-Accel-Redirect"] == f"/_exports/{file.path}"
    assert response["Content-Disposition"].startswith("attachment;") and response.content == b""


def test_the_cleanup_deletes_a_finished_file_no_row_names(users, rows, settings, dashboard_clock):
    settings.EXPORTS_DIR.mkdir(parents=True, exist_ok=True)
    orphan = settings.EXPORTS_DIR / "history-999-0123456789abcdef.csv"
    orphan.write_text("left by a worker killed before its row said ready")
    file = ask(users["IpsUser"])
    exporting.run_export(file.pk)
    file.refresh_from_db()
    dashboard_clock.advance(dt.timedelta(hours=1))
    exports.clean_exports()
    assert orphan.exists()  # young: it may be a worker's that is about to say so
    import os
    os.utime(orphan, (0, 0))
    exports.clean_exports()
    assert not orphan.exists() and exports.file_path(file).exists()


# --- Times as the slow way writes them, read from their text in UTC ------------------------------

# Zones whose offsets change on the hour, on the half hour (St John's: at 03:31 UTC), by half an
# hour (Lord Howe), or are not whole hours (Kolkata, Chatham); UTC itself.
ZONES = ["Europe/Rome", "America/New_York", "America/St_Johns", "Asia/Kolkata", "Australia/Lord_Howe",
         "Pacific/Chatham", "UTC"]
# Each zone's 2026 changes, and plain times, to the microsecond and without a fraction.
INSTANTS = [dt.datetime(2026, 3, 29, 0, 59, 59, 999999), dt.datetime(2026, 3, 29, 1, 0), dt.datetime(2026, 3, 8, 6, 59, 59),
            dt.datetime(2026, 3, 8, 7, 0, 0, 1000), dt.datetime(2026, 3, 8, 5, 30, 0, 500), dt.datetime(2026, 11, 1, 4, 31),
            dt.datetime(2026, 4, 4, 14, 59, 59, 999), dt.datetime(2026, 4, 4, 15, 0, 0, 120000), dt.datetime(2026, 10, 3, 15, 30),
            dt.datetime(2026, 9, 26, 14, 45, 0, 7), dt.datetime(2026, 12, 31, 23, 59, 59, 999999), dt.datetime(2026, 1, 1)]


@pytest.mark.parametrize("zone", ZONES)
def test_time_cells_from_text_are_what_the_slow_way_writes(zone):
    import zoneinfo

    tz = zoneinfo.ZoneInfo(zone)
    cells = csvexport._TimeCells(tz)
    for naive in INSTANTS:
        for minutes in range(-90, 91, 7):
            value = (naive + dt.timedelta(minutes=minutes)).replace(tzinfo=dt.UTC)
            expected = value.astimezone(tz).isoformat(timespec="milliseconds")
            for text in (str(value.replace(tzinfo=None)), value.strftime("%Y-%m-%d %H:%M:%S.%f")):
                assert cells(text) == expected, (zone, text)
    assert cells(None) == ""
    fast = sum(1 for hour in cells.hours.values() if hour)
    if zone in ("Europe/Rome", "America/New_York", "UTC"):
        assert fast > len(cells.hours) * 0.9  # the hours of a change only took the slow way
    elif zone in ("Asia/Kolkata", "Pacific/Chatham"):
        assert fast == 0  # never whole hours


@pytest.mark.parametrize("zone", ["Australia/Lord_Howe", "America/St_Johns", "Europe/Rome"])
def test_the_export_writes_times_in_the_zone_as_the_slow_way_on_this_database(zone, users, job):
    import zoneinfo

    tz = zoneinfo.ZoneInfo(zone)
    for i, naive in enumerate(INSTANTS):
        row = make_execution(job, users["IpsUser"], "accepted", requested_at=naive.replace(tzinfo=dt.UTC))
        row.ips_started_at = (naive + dt.timedelta(seconds=i)).replace(tzinfo=dt.UTC)
        row.save()
    fields = [f for _, f in csvexport.EXPORT_COLUMNS]
    times = [i for i, f in enumerate(fields) if f in ("requested_at", "ips_started_at", "ips_ended_at")]
    by_id = {r.pk: r for r in Execution.objects.all()}
    written = list(csvexport.export_rows(Execution.objects.all(), history.DEFAULT_SORT, {}, tz))
    if connection.vendor == "postgresql":
        written += list(csvexport.export_rows(Execution.objects.all(), history.DEFAULT_SORT, {}, tz, server_cursor=True))
    assert len(written) == len(INSTANTS) * (2 if connection.vendor == "postgresql" else 1)
    for cells in written:
        row = by_id[cells[0]]
        for i in times:
            assert cells[i] == csvexport._cell(getattr(row, fields[i]), tz), (fields[i], cells[i])
