"""The history export run by real worker processes: two ``manage.py db_worker`` on this pass's database
(SQLite file or PostgreSQL) take the task the request enqueued; one writes the file, the other finds nothing."""

from __future__ import annotations

import csv
import io

import pytest
from django.http import FileResponse
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from conftest import wait_for
from jobs.models import ExportFile, HistoryExport

from .conftest import make_execution
from .test_workers import log_messages, procs  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_db_workers_write_one_file_that_its_owner_downloads(procs, client, users, job, settings, tmp_path):  # noqa: F811
    rows = [make_execution(job, users["IpsUser"], "denied") for _ in range(7)]
    exports_dir = tmp_path / "exports"
    settings.EXPORTS_DIR = exports_dir
    workers = [procs.db_worker(f"export-worker-{i}", EXPORTS_DIR=exports_dir, EXPORTS_PROGRESS_EVERY=3) for i in (1, 2)]
    client.force_login(users["IpsUser"])
    response = client.post(reverse("jobs:history_export"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    file = ExportFile.objects.get()

    def ready():
        for w in workers:
            w.check_alive()
        file.refresh_from_db()
        return file.state in ExportFile.FINISHED and DBTaskResult.objects.filter(status="SUCCESSFUL").exists()

    wait_for(ready, "a db_worker to write the export", timeout=60)
    assert (file.state, file.rows_written, file.rows_total) == ("ready", 7, 7), file.error
    assert sorted(p.name for p in exports_dir.iterdir()) == [file.path]
    download = client.get(reverse("jobs:export_download", args=[file.pk]))
    assert isinstance(download, FileResponse)
    text = b"".join(download.streaming_content).decode("utf-8")
    assert sorted(int(r["id"]) for r in csv.DictReader(io.StringIO(text[1:]))) == sorted(r.pk for r in rows)
    assert HistoryExport.objects.get().completed is True
    # One task, run once, by one of the two.
    assert DBTaskResult.objects.get().status == "SUCCESSFUL"
    ran = [w for w in workers if any("history export" in m and "ready" in m for m in log_messages(w.log()))]
    assert len(ran) == 1
