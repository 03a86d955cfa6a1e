"""The export in a real browser: Export CSV shows the progress panel at once, the panel polls until
the worker has written the file, then offers Download (Debian's Chromium through Playwright)."""

import os

import pytest
from django.utils import timezone

from jobs.models import ExportFile, Job
from jobs import exporting

from .conftest import make_execution
from .test_browser import CHROMIUM, _log_in, chromium, page  # noqa: F401  (fixtures)

WAIT = 20_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's Chromium at {CHROMIUM}"),
]


def test_export_shows_progress_then_the_download(page, live_server, transactional_db, users, synced, settings,  # noqa: F811
                                                  tmp_path):
    from playwright.sync_api import expect

    settings.EXPORTS_DIR = tmp_path / "exports"
    job = Job.objects.get(handle="47|My Test Job|")
    for _ in range(3):
        make_execution(job, users["IpsUser"], "denied", requested_at=timezone.now())
    base = live_server.url
    _log_in(page, base, "ipsuser")
    page.wait_for_load_state("networkidle")
    page.goto(f"{base}/history/")
    page.wait_for_load_state("load")  # htmx ready; the panel's own load may still be on its way
    page.get_by_role("button", name="Export CSV").click()
    panel = page.locator("#export-panel")
    # Queued in the database: no worker runs in this test until it plays one.
    expect(panel).to_contain_text("Waiting for a background worker", timeout=WAIT)
    file = ExportFile.objects.get()
    assert exporting.run_export(file.pk).startswith("ready: 3 rows")
    # The next poll brings the finished panel, and polling stops (286).
    expect(panel).to_contain_text("Ready: 3 rows.", timeout=WAIT)
    expect(page.get_by_role("progressbar", name="Export progress")).to_have_attribute("value", "3")
    with page.expect_download(timeout=WAIT) as download:
        panel.get_by_role("link", name="Download").click()
    assert download.value.suggested_filename.startswith("ipsadmin-history-")
    assert open(download.value.path(), encoding="utf-8-sig").read().count("\n") == 4
    # Back on History later, the latest export is there again.
    page.goto(f"{base}/history/")
    expect(page.locator("#export-panel")).to_contain_text("Ready: 3 rows.", timeout=WAIT)
    assert page.console_errors == []
