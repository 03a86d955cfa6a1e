"""History, the job's page and the run's page in Chromium (issue 20): axe-core finds no serious or
critical violation, in English and Italian, at 1280 and 390 px, and at 390 px none scrolls sideways.

The runs are real: pressed against the emulator, moved on its clock, recorded by the watcher."""

import os

import pytest

from .axe import serious, signed_in
from .conftest import RUN_SECONDS, look, press_run
from .test_browser import CHROMIUM, WAIT, chromium  # noqa: F401 (chromium: the module's browser)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's Chromium at {CHROMIUM}"),
]


@pytest.fixture
def two_runs(job, users, clock, ips_emulator):
    """My Test Job: one run ended with a fatal error (its log has details), one IPS is running now."""
    ips_emulator.state.jobs[job.handle].outcome = "fatal"
    ended = press_run(job, users["IpsUser"], "a11y-ended")
    look(job.company)
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    ips_emulator.state.jobs[job.handle].outcome = "warnings"
    running = press_run(job, users["IpsUser"], "a11y-running")
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    ended.refresh_from_db()
    running.refresh_from_db()
    assert ended.ips_result == "fatal" and running.ips_state == "Running", (ended.ips_result, running.ips_state)
    return ended, running


@pytest.mark.parametrize("locale", ["en-US", "it-IT"])
@pytest.mark.parametrize("width", [1280, 390])
def test_history_job_and_run_pages_pass_axe(width, locale, chromium, live_server, transactional_db, job, two_runs):  # noqa: F811
    from playwright.sync_api import expect

    ended, running = two_runs
    base = live_server.url
    # Signed in by the keyboard: the button's name is in the page's language.
    context, page, errors = signed_in(chromium, base, width, locale, "ipsuser", wait=WAIT)
    try:
        pages = {
            "History": f"{base}/history/",
            "the job's page": f"{base}/jobs/{job.pk}/",
            "a run with a result": f"{base}/runs/{ended.pk}/",
            "a run still running": f"{base}/runs/{running.pk}/",
        }
        for name, url in pages.items():
            page.goto(url)
            page.wait_for_load_state("networkidle")
            assert serious(page) == [], (name, width, locale)
            if width == 390:
                scroll = page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= width, (name, locale, scroll)
        # The run still running asks again; its progress bar has a name; the ended one does not ask.
        page.goto(pages["a run still running"])
        expect(page.locator("#run-live[hx-trigger]")).to_have_count(1)
        assert page.locator("#run-live progress").get_attribute("aria-label")
        page.goto(pages["a run with a result"])
        expect(page.locator("#run-live")).to_be_visible()
        expect(page.locator("#run-live[hx-trigger]")).to_have_count(0)
        # Its log table: a named, focusable scroll region.
        region = page.locator("#log-details .table-wrap")
        assert region.get_attribute("tabindex") == "0" and region.get_attribute("aria-label")
        assert errors == []
    finally:
        context.close()


def _signed_in(chromium, live_server, width=1280):  # noqa: F811
    context = chromium.new_context(viewport={"width": width, "height": 860}, locale="en-US")
    context.set_default_timeout(WAIT)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ipsuser")
    page.fill("#id_password", "pw")
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{live_server.url}/")
    return context, page


#: What happens to the run page's Status section while the confirm asks about its Stop: its own refresh
#: comes (the request the 5 s poll makes: same element, same target), or it is replaced anyway.
REFRESH = "htmx.ajax('GET', location.pathname + '?part=live', {source: '#run-live', target: '#run-live', swap: 'outerHTML'})"
REPLACE = """() => { const s = document.getElementById('run-live'), c = s.cloneNode(true);
  c.querySelectorAll('.confirming').forEach(f => f.classList.remove('confirming')); s.replaceWith(c); htmx.process(c); }"""


@pytest.mark.parametrize("meanwhile", ["refresh", "replaced"])
def test_stop_on_the_run_page_survives_its_refresh(meanwhile, chromium, live_server, transactional_db, job, users, clock, ips_emulator):  # noqa: F811
    from playwright.sync_api import expect

    from .conftest import soap_calls

    running = press_run(job, users["IpsUser"], "a11y-stop")
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    context, page = _signed_in(chromium, live_server)
    expect.set_options(timeout=WAIT)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{live_server.url}/runs/{running.pk}/")
        page.evaluate("""window.__asked = 0; document.addEventListener('htmx:beforeRequest', e => {
          if (e.detail.elt.id === 'run-live') window.__asked++; });""")
        page.locator("#run-live button[data-action=stop]").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#confirm")).to_have_attribute("open", "")
        if meanwhile == "refresh":
            page.evaluate(REFRESH)
            page.wait_for_function("window.__asked === 1")
        else:
            page.evaluate(REPLACE)
        page.locator("#confirm-ok").click()
        expect(page.locator("#messages .flash-success")).to_have_count(1)
        assert "stop" in page.locator("#messages").inner_text().lower()
        assert len(soap_calls(ips_emulator, "stopJob")) == 1
        # The pressed button was disabled while the press went: focus is on the section's heading, not <body>.
        page.wait_for_function("document.activeElement && document.activeElement.id === 'run-live-title'")
        assert errors == []
    finally:
        context.close()


LONG_NAME = "Nightly" + "X" * 53  # 60 characters, no break in them


def test_a_long_job_name_does_not_widen_the_pages_at_390(chromium, live_server, transactional_db, synced, users, clock, ips_emulator):  # noqa: F811
    from jobs.models import Job
    from jobs.services import sync

    ips_emulator.state.add_job("47", LONG_NAME)
    sync.sync_company(synced)
    job = Job.objects.get(company=synced, name=LONG_NAME)
    running = press_run(job, users["IpsUser"], "a11y-long")
    clock.advance(RUN_SECONDS / 2)
    look(job.company)
    context, page = _signed_in(chromium, live_server, width=390)
    try:
        for name, url in {"the job's page": f"/jobs/{job.pk}/", "the run's page": f"/runs/{running.pk}/"}.items():
            page.goto(live_server.url + url)
            page.wait_for_load_state("networkidle")
            assert page.locator("h1").inner_text() == LONG_NAME
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= 390, (name, scroll)
    finally:
        context.close()


def test_a_runs_end_is_said_once(chromium, live_server, transactional_db, job, users):  # noqa: F811
    """Active in IPS sends a run's end again when its cell's swap was skipped: the end is not said twice."""
    context, page = _signed_in(chromium, live_server)
    try:
        said = '<div id="announcer" hx-swap-oob="innerHTML"><p data-said="{k}">IPS finished My Test Job: {r}.</p></div>'
        swap = "html => htmx.swap('#messages', html, {swapStyle: 'none'})"
        page.evaluate(swap, said.format(k=f"{job.pk}:7:ok", r="finished"))
        assert page.locator("#announcer").inner_text() == "IPS finished My Test Job: finished."
        page.evaluate("document.getElementById('announcer').textContent = ''")
        page.evaluate(swap, said.format(k=f"{job.pk}:7:ok", r="finished"))  # the same end again
        assert page.locator("#announcer").inner_text() == ""
        page.evaluate(swap, said.format(k=f"{job.pk}:8:ok", r="finished"))  # the next run's end is said
        assert page.locator("#announcer").inner_text() == "IPS finished My Test Job: finished."
    finally:
        context.close()
