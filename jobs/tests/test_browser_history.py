"""History's filters in a real browser: the address is the state, and Back and Forward
bring the rows and the drop-downs back together (Debian's Chromium through Playwright).

Before: after changing two filters, Back showed rows that did not match the
drop-downs, and the next change silently dropped the filter Back had hidden.
"""

import datetime as dt
import os
import re

import pytest
from django.utils import timezone

from jobs import history
from jobs.models import Job

from .conftest import make_execution
from .test_browser import CHROMIUM, _log_in, chromium, page  # noqa: F401  (fixtures)

#: Generous: the suite may share two CPUs with a worker and PostgreSQL.
WAIT = 20_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's Chromium at {CHROMIUM}"),
]


@pytest.fixture
def runs(users, synced):
    """Twelve runs in company 47, a minute apart: a third refused, half by ipsadmin, half by ipsuser."""
    job = Job.objects.get(handle="47|My Test Job|")
    other = Job.objects.get(handle="47|Nightly | Publish|")
    now = timezone.now()
    made = []
    for i in range(12):
        outcome = "refused" if i % 3 == 0 else "accepted"
        who = users["IpsUser"] if i % 2 else users["IpsAdmin"]
        made.append(make_execution(job if i % 4 else other, who, outcome, requested_at=now - dt.timedelta(minutes=i)))
    return made


def _rows(page):
    return sorted(int(pk) for pk in re.findall(r"execution-(\d+)", " ".join(
        page.locator("#results tbody tr[id]").evaluate_all("rows => rows.map(r => r.id)"))))


def test_back_and_forward_restore_rows_and_filters_together(page, live_server, transactional_db, runs, monkeypatch):  # noqa: F811
    from playwright.sync_api import expect

    monkeypatch.setattr(history, "PAGE_SIZE", 3)
    base = live_server.url
    _log_in(page, base, "ipsuser")
    # The jobs page asks IPS what it runs as it loads: leave once that is answered,
    # or the browser aborts it (and htmx says so in the console).
    page.wait_for_load_state("networkidle")
    page.goto(f"{base}/history/")
    page.wait_for_load_state("load")
    everything = page.locator("#results")
    expect(everything).to_contain_text("12 executions", timeout=WAIT)

    # Two filter changes, each its own history entry.
    page.select_option("#id_outcome", "refused")
    expect(page).to_have_url(re.compile(r"\?outcome=refused$"), timeout=WAIT)
    expect(page.locator("#results")).to_contain_text("4 executions", timeout=WAIT)
    page.fill("#id_user", "ipsadmin")
    page.press("#id_user", "Enter")
    expect(page).to_have_url(re.compile(r"\?user=ipsadmin&outcome=refused$"), timeout=WAIT)
    expect(page.locator("#results")).to_contain_text("2 executions", timeout=WAIT)
    both = {r.pk for r in runs if r.outcome == "refused" and r.username == "ipsadmin"}
    assert set(_rows(page)) == both

    # Back: the first filter alone, in the rows and in the fields.
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?outcome=refused$"), timeout=WAIT)
    expect(page.locator("#results")).to_contain_text("4 executions", timeout=WAIT)
    expect(page.locator("#id_outcome")).to_have_value("refused", timeout=WAIT)
    expect(page.locator("#id_user")).to_have_value("", timeout=WAIT)
    refused = {r.pk for r in runs if r.outcome == "refused"}
    expect(page.locator("#results tbody tr[id]")).to_have_count(3, timeout=WAIT)  # a page of 3, then "Older"

    # The next change keeps the filter Back brought back (it used to be dropped).
    page.select_option("#id_ips_result", "")  # a change that filters nothing new
    page.select_option("#id_who", "mine")
    expect(page).to_have_url(re.compile(r"who=mine&outcome=refused"), timeout=WAIT)
    mine = {r.pk for r in runs if r.outcome == "refused" and r.username == "ipsuser"}
    expect(page.locator("#results")).to_contain_text(f"{len(mine)} execution", timeout=WAIT)
    assert set(_rows(page)) == mine

    # Back twice: no filters at all, in the rows and the fields.
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?outcome=refused$"), timeout=WAIT)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/history/$"), timeout=WAIT)
    expect(page.locator("#results")).to_contain_text("12 executions", timeout=WAIT)
    expect(page.locator("#id_outcome")).to_have_value("", timeout=WAIT)

    # Forward: the filter again, rows and field.
    page.go_forward()
    expect(page).to_have_url(re.compile(r"\?outcome=refused$"), timeout=WAIT)
    expect(page.locator("#results")).to_contain_text("4 executions", timeout=WAIT)
    expect(page.locator("#id_outcome")).to_have_value("refused", timeout=WAIT)

    # Paging is in the address too: Older, then Back to the first page.
    first = _rows(page)
    page.get_by_role("link", name="Older →").click()
    expect(page).to_have_url(re.compile(r"outcome=refused&after="), timeout=WAIT)
    expect(page.locator("#results tbody tr[id]")).to_have_count(1, timeout=WAIT)
    assert set(_rows(page)) | set(first) == refused
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?outcome=refused$"), timeout=WAIT)
    expect(page.locator("#results tbody tr[id]")).to_have_count(3, timeout=WAIT)
    assert _rows(page) == first
    expect(page.locator("#id_outcome")).to_have_value("refused", timeout=WAIT)

    assert page.console_errors == [], page.console_errors


class HeldRestores:
    """Back's requests for pages matching ``address`` held until release(); every restore htmx
    asks the server for is watched, to wait until each has settled (answered or dropped)."""

    def __init__(self, page, address):
        self.page, self.held = page, []
        page.evaluate("""() => {
            window.restores = [];
            document.body.addEventListener("htmx:historyCacheMiss", e => window.restores.push(e.detail.xhr));
        }""")
        page.route(address, self._hold)

    def _hold(self, route):
        if route.request.headers.get("hx-history-restore-request"):
            self.held.append(route)
        else:
            route.continue_()

    def asked(self, n):
        self.page.wait_for_function(f"() => window.restores.length === {n}", timeout=WAIT)

    def release(self):
        """The held answers arrive now, late; then everything has settled (a swap runs in the task that ends a request)."""
        from playwright.sync_api import Error

        assert len(self.held) == 1
        try:
            self.held[0].continue_()
        except Error:
            pass  # already dropped by the page: nothing left to answer
        self.page.wait_for_function(
            "() => window.restores.every(x => x.readyState === 4 || x.readyState === 0)", timeout=WAIT)


def _history_as_ipsuser(page, base):
    from playwright.sync_api import expect

    _log_in(page, base, "ipsuser")
    page.wait_for_load_state("networkidle")
    page.goto(f"{base}/history/")
    expect(page.locator("#results")).to_contain_text("12 executions", timeout=WAIT)
    page.select_option("#id_outcome", "refused")
    expect(page).to_have_url(re.compile(r"\?outcome=refused$"), timeout=WAIT)
    expect(page.locator("#results")).to_contain_text("4 executions", timeout=WAIT)


def test_a_late_answer_to_an_earlier_back_never_replaces_the_page_back_reached(page, live_server, transactional_db, runs):  # noqa: F811
    """Back twice quickly: the first page's answer, held until the second has been
    shown, is dropped instead of swapped over it (CI once saw 4 rows under /history/)."""
    from playwright.sync_api import expect

    _history_as_ipsuser(page, live_server.url)
    page.select_option("#id_who", "mine")
    expect(page).to_have_url(re.compile(r"who=mine&outcome=refused"), timeout=WAIT)
    expect(page.locator("#results")).to_contain_text("2 executions", timeout=WAIT)

    restores = HeldRestores(page, re.compile(r"/history/\?outcome=refused$"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?outcome=refused$"), timeout=WAIT)
    restores.asked(1)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/history/$"), timeout=WAIT)
    expect(page.locator("#results")).to_contain_text("12 executions", timeout=WAIT)

    restores.release()
    expect(page.locator("#results")).to_contain_text("12 executions", timeout=WAIT)
    expect(page.locator("#id_outcome")).to_have_value("", timeout=WAIT)
    assert page.console_errors == [], page.console_errors


def test_a_late_answer_to_back_never_replaces_a_filter_changed_meanwhile(page, live_server, transactional_db, runs):  # noqa: F811
    """Back, then a filter changed before Back's page arrived: the filter's rows stay, with their address."""
    from playwright.sync_api import expect

    _history_as_ipsuser(page, live_server.url)
    restores = HeldRestores(page, re.compile(r"/history/$"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"/history/$"), timeout=WAIT)
    restores.asked(1)
    # Before Back's page arrives, the user narrows what is still shown.
    page.select_option("#id_who", "mine")
    expect(page).to_have_url(re.compile(r"who=mine&outcome=refused$"), timeout=WAIT)
    mine = {r.pk for r in runs if r.outcome == "refused" and r.username == "ipsuser"}
    expect(page.locator("#results")).to_contain_text(f"{len(mine)} executions", timeout=WAIT)

    restores.release()
    expect(page).to_have_url(re.compile(r"who=mine&outcome=refused$"), timeout=WAIT)
    expect(page.locator("#results")).to_contain_text(f"{len(mine)} executions", timeout=WAIT)
    assert set(_rows(page)) == mine
    expect(page.locator("#id_outcome")).to_have_value("refused", timeout=WAIT)
    assert page.console_errors == [], page.console_errors
