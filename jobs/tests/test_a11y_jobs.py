"""Issue 20 on the login page, the jobs page and the job's page: axe-core, a phone's 390 px, the keyboard alone.

In Debian's Chromium (Playwright), English and Italian, at 1280 and 390 px: axe finds no serious or
critical violation; at 360 and 390 px nothing scrolls sideways and every job's Run and Stop can be pressed
where they are; a keyboard-only user runs and stops a job through the in-page confirm, focus lands
on the row's next control after each swap, and the page's live region says the run's end. Runs move
only on the emulator's clock (``ips_clock``) and are recorded by a look of the watcher (``look``)."""

import pytest

from jobs.models import Company, Execution, Job

from . import axe
from .conftest import executes, look, press_run, soap_calls
from .test_browser import chromium  # noqa: F401  (fixture)
from .test_browser import pytestmark  # noqa: F401  (browser marker, skip without Chromium)
from .test_browser import new_page

WIDTHS = [1280, 390]
LOCALES = ["en-US", "it-IT"]
#: The live region's words for a run stopped in IPS, per language.
STOPPED = {"en": "IPS finished My Test Job: stopped.", "it": "IPS ha terminato My Test Job: fermato."}


@pytest.fixture
def open_page(chromium):  # noqa: F811
    """open_page(width, locale) -> a page of a new browser context; every console error is kept."""
    contexts = []

    def _open(width=1280, locale="en-US"):
        context, page = new_page(chromium, width, locale=locale)
        contexts.append(context)
        return page

    yield _open
    for context in contexts:
        context.close()


def _log_in(page, base, username):
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.locator("#id_password").press("Enter")
    page.wait_for_url(f"{base}/")
    # htmx is deferred: its polls have started once the page has loaded.
    page.wait_for_load_state("load")


def _running(job, user, ips_clock):
    """A run of ``job`` pressed by ``user``, halfway in IPS and recorded so by the watcher."""
    press_run(job, user)
    ips_clock.advance(5)
    look(job.company)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("locale", LOCALES)
def test_the_login_page_has_no_serious_violation(open_page, live_server, transactional_db, locale, width):
    page = open_page(width, locale)
    page.goto(f"{live_server.url}/accounts/login/")
    assert axe.serious(page) == []
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width
    assert page.console_errors == []


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("username", ["ipsuser", "admin"])
def test_the_jobs_page_has_no_serious_violation(
    open_page, live_server, transactional_db, users, job, ips_emulator, ips_clock, username, locale, width
):
    """With a run in IPS (Active in IPS, the row's progress, Stop) and a company admin's disabled buttons
    beside them for the superuser (both companies open)."""
    from playwright.sync_api import expect

    ips_emulator.state.job_duration = 10
    _running(job, users["IpsUser"], ips_clock)
    page = open_page(width, locale)
    _log_in(page, live_server.url, username)
    other = Company.objects.get(handle="48")
    if username == "admin":
        page.goto(f"{live_server.url}/?open={job.company.pk}&open={other.pk}")
    expect(page.locator(f"#active-{job.company.pk} progress")).to_have_count(1)
    expect(page.locator(f"#job-{job.pk} .ips-status progress")).to_have_count(1)
    assert axe.serious(page) == []
    # Moderate, but named by issue 20: each landmark told apart by its name.
    found = axe.violations(page)
    assert [v["id"] for v in found if v["id"] == "landmark-unique"] == [], [(v["id"], v["impact"]) for v in found]
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width, _wide(page, width)
    assert page.console_errors == []


def _wide(page, width):
    """The elements past the right edge (for a failure's message)."""
    return page.evaluate(
        """w => [...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > w)
                .slice(0, 8).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))""",
        width,
    )


@pytest.mark.parametrize("width", [360, 390])
def test_on_a_phone_nothing_scrolls_sideways_and_every_run_and_stop_can_be_pressed(
    open_page, live_server, transactional_db, users, job, ips_emulator, ips_clock, width
):
    """At 360 and 390 px, the superuser's page with both companies open and a run in IPS: every Run and Stop of a row,
    scrolled into view, lies within the viewport and is what a finger at its centre touches."""
    from playwright.sync_api import expect

    ips_emulator.state.job_duration = 10
    _running(job, users["IpsUser"], ips_clock)
    page = open_page(width)
    _log_in(page, live_server.url, "admin")
    other = Company.objects.get(handle="48")
    page.goto(f"{live_server.url}/?open={job.company.pk}&open={other.pk}")
    expect(page.locator(f"#job-{job.pk} [data-action=stop]")).to_have_count(1)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width, _wide(page, width)
    jobs = Job.objects.filter(company__in=[job.company, other])
    buttons = page.locator("tr[id^=job-] td.action button[data-action=run], tr[id^=job-] td.action button[data-action=stop]")
    assert buttons.count() == jobs.count() + 1  # a Run per job, and the running job's Stop
    for i in range(buttons.count()):
        button = buttons.nth(i)
        button.scroll_into_view_if_needed()
        where = button.evaluate(
            """b => { const r = b.getBoundingClientRect(); const x = r.left + r.width / 2, y = r.top + r.height / 2;
                      const hit = document.elementFromPoint(x, y);
                      return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, hit: !!hit && b.contains(hit)}; }"""
        )
        assert 0 <= where["left"] and where["right"] <= width and 0 <= where["top"] and where["bottom"] <= 860, where
        assert where["hit"], f"button {i} is covered or clipped: {where}"
    # A job's name has the card's width: it wraps between words, never a letter per line.
    cell = page.locator(f"#job-{job.pk} td.name")
    assert cell.evaluate("td => td.getBoundingClientRect().width") > width - 80
    assert page.locator(f"#job-{job.pk} a.job-name").evaluate("a => a.getClientRects().length") == 1
    # The job's page shows the same row.
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    expect(page.locator(f"#job-{job.pk} [data-action=stop]")).to_be_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width, _wide(page, width)
    assert page.console_errors == []


def _focused(page) -> dict:
    return page.evaluate(
        """() => { const a = document.activeElement; const row = a && a.closest("tr[id^=job-]");
                   return {tag: a ? a.tagName : null, action: a && a.getAttribute("data-action"),
                           row: row ? row.id : null, inDialog: !!(a && a.closest("dialog[open]")),
                           cls: a ? a.className : null, text: a ? a.textContent.trim() : null}; }"""
    )


@pytest.mark.parametrize("locale", LOCALES)
def test_a_keyboard_user_runs_and_stops_a_job_and_hears_its_end(
    open_page, live_server, transactional_db, users, job, ips_emulator, ips_clock, locale
):
    from playwright.sync_api import expect

    ips_emulator.state.job_duration = 10
    page = open_page(390, locale)
    base = live_server.url
    page.goto(f"{base}/accounts/login/")
    page.keyboard.type("ipsuser")  # the user name field has the focus (autofocus)
    page.keyboard.press("Tab")
    page.keyboard.type("pw")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/")
    page.wait_for_load_state("load")
    row = f"job-{job.pk}"

    # The first Tab is the skip link; it takes focus past the header.
    page.keyboard.press("Tab")
    assert _focused(page)["cls"] == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    for _ in range(40):
        page.keyboard.press("Tab")
        f = _focused(page)
        if f["row"] == row and f["action"] == "run":
            break
    else:
        pytest.fail("Tab never reached the job's Run")

    # Escape cancels: nothing sent, focus back on Run.
    page.keyboard.press("Enter")
    expect(page.locator("dialog#confirm")).to_have_attribute("open", "")
    assert _focused(page)["inDialog"]
    page.keyboard.press("Escape")
    expect(page.locator("dialog#confirm")).not_to_have_attribute("open", "")
    assert _focused(page)["row"] == row and _focused(page)["action"] == "run"
    assert not executes(ips_emulator)

    # Run, confirmed in the dialog: focus lands on the new row's Stop.
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-question")).to_contain_text("My Test Job")
    page.keyboard.press("Tab")
    assert _focused(page)["inDialog"] and _focused(page)["cls"] == "primary"
    page.keyboard.press("Enter")
    # The press answers (its message), with the row's Stop in it.
    expect(page.locator("#messages")).not_to_be_empty()
    assert page.locator(f"#{row} [data-action=stop]").count() == 1, page.locator(f"#{row}").inner_html()
    page.wait_for_function(f"() => document.activeElement.closest('#{row}') && document.activeElement.dataset.action === 'stop'")
    assert len(executes(ips_emulator)) == 1
    expect(page.locator("#announcer")).to_contain_text("My Test Job")

    # Stop, confirmed by keyboard: focus lands on the row's Run (waiting for the run to end).
    ips_clock.advance(5)
    look(job.company)
    page.keyboard.press("Enter")
    expect(page.locator("dialog#confirm")).to_have_attribute("open", "")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.activeElement.closest('#{row}') && document.activeElement.dataset.action === 'run'")
    assert len(soap_calls(ips_emulator, "stopJob")) == 1

    # IPS ends the run (stopped); the watcher records it; the panel's poll says so and Run comes back.
    ips_clock.advance(5)
    look(job.company)
    expect(page.locator("#announcer")).to_have_text(STOPPED[locale[:2]])
    expect(page.locator(f"#{row} form.run button")).to_be_focused()
    assert Execution.objects.get(operation="executeJob").ips_result == "stopped"
    assert page.console_errors == []


@pytest.mark.parametrize("locale, run, stop", [("en-US", "Run", "Stop"), ("it-IT", "Esegui", "Ferma")])
def test_every_button_is_named_with_its_job(
    open_page, live_server, transactional_db, users, job, ips_emulator, ips_clock, locale, run, stop
):
    """The visible label stays the verb; the name a screen reader reads carries the job, in both
    languages, for enabled and disabled buttons alike (a company admin's Run)."""
    from playwright.sync_api import expect

    ips_emulator.state.job_duration = 10
    _running(job, users["IpsUser"], ips_clock)
    page = open_page(1280, locale)
    _log_in(page, live_server.url, "ipsuser")
    cell = page.locator(f"#action-{job.pk}")
    expect(cell.get_by_role("button", name=f"{stop} My Test Job", exact=True)).to_be_visible()
    expect(cell.get_by_role("button", name=f"{run} My Test Job", exact=True)).to_be_disabled()
    # The disabled Run's reason has no figure of the run's progress that could grow old.
    assert "%" not in cell.locator("[data-action=run]").get_attribute("title")
    bold = Job.objects.get(company=job.company, name="<b>Bold</b> Upload")
    expect(page.get_by_role("button", name=f"{run} <b>Bold</b> Upload", exact=True)).to_be_enabled()
    assert page.locator(f"#action-{bold.pk} [data-action=run] [aria-hidden=true]").inner_text().strip() == run
    # Active in IPS's Stop too, and the progress bars are named by the job.
    panel = page.locator(f"#active-{job.company.pk}")
    expect(panel.get_by_role("button", name=f"{stop} My Test Job", exact=True)).to_be_visible()
    expect(page.get_by_role("progressbar", name="My Test Job")).to_have_count(2)

    page.context.clear_cookies()
    _log_in(page, live_server.url, "ipscompanyadmin")
    expect(page.get_by_role("button", name=f"{run} My Test Job", exact=True)).to_be_disabled()
    assert page.console_errors == []


def test_the_row_and_active_in_ips_never_disagree_on_progress(
    open_page, live_server, transactional_db, users, job, ips_emulator, ips_clock
):
    """Each poll that brings the run's progress (the row's every 2 s, the panel's every 5 s) updates both."""
    from playwright.sync_api import expect

    ips_emulator.state.job_duration = 10
    _running(job, users["IpsUser"], ips_clock)
    page = open_page(1280)
    _log_in(page, live_server.url, "ipsuser")
    row = page.locator(f"#job-{job.pk} .ips-status progress")
    panel = page.locator(f"#active-{job.company.pk} progress")
    expect(row).to_have_attribute("value", "50")
    expect(panel).to_have_attribute("value", "50")
    # Halt the row's poll at its next answer and let the panel's bring the news first, and the other way.
    ips_clock.advance(2)
    look(job.company)
    expect(panel).to_have_attribute("value", "70")
    assert row.get_attribute("value") == "70"
    ips_clock.advance(1)
    look(job.company)
    expect(row).to_have_attribute("value", "80")
    assert panel.get_attribute("value") == "80"
    assert page.console_errors == []


def test_on_the_jobs_own_page_the_end_of_a_run_gives_run_back_and_is_said(
    open_page, live_server, transactional_db, users, job, ips_emulator, ips_clock
):
    """The job's page has no Active in IPS: the row's own poll, at the run's end, sends the row's
    buttons again (Run enabled, Stop gone) and says the result in the live region."""
    from playwright.sync_api import expect

    from jobs.templatetags.ipsadmin import result_label

    ips_emulator.state.job_duration = 10
    _running(job, users["IpsUser"], ips_clock)
    page = open_page(390)
    _log_in(page, live_server.url, "ipsuser")
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    cell = page.locator(f"#action-{job.pk}")
    expect(cell.get_by_role("button", name="Stop My Test Job")).to_be_visible()
    expect(cell.locator("[data-action=run]")).to_have_attribute("aria-disabled", "true")
    ips_clock.advance(5)
    look(job.company)
    run = Execution.objects.get(operation="executeJob")
    assert run.ips_result
    expect(page.locator("#announcer")).to_have_text(f"IPS finished My Test Job: {result_label(run)}.")
    expect(cell.locator("form.run button")).to_be_enabled()
    expect(cell.locator("[data-action=stop]")).to_have_count(0)
    assert page.console_errors == []


def test_after_pause_focus_lands_on_resume_and_after_resume_on_pause(
    open_page, live_server, transactional_db, users, job, ips_emulator
):
    page = open_page(390)
    _log_in(page, live_server.url, "ipsuser")
    row = f"job-{job.pk}"
    for pressed, successor in (("pause", "resume"), ("resume", "pause")):
        page.locator(f"#{row} [data-action={pressed}]").focus()
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")  # Cancel -> the dialog's Pause / Resume
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"() => document.activeElement.closest('#{row}') && document.activeElement.dataset.action === '{successor}'"
        )
    assert [c["operation"] for c in ips_emulator.state.calls if c["operation"] in ("pauseJob", "resumeJob")] == [
        "pauseJob", "resumeJob"]
    assert page.console_errors == []


def test_a_message_into_the_message_box_is_said_too(
    open_page, live_server, transactional_db, users, job, ips_emulator, ips_clock
):
    """Stop from Active in IPS answers with a message only (into #messages): the live region says it."""
    from playwright.sync_api import expect

    ips_emulator.state.job_duration = 10
    _running(job, users["IpsUser"], ips_clock)
    page = open_page(1280)
    _log_in(page, live_server.url, "ipsuser")
    stop = page.locator(f"#active-{job.company.pk}").get_by_role("button", name="Stop My Test Job")
    stop.focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#messages")).to_contain_text("IPS is stopping “My Test Job”")
    expect(page.locator("#announcer")).to_contain_text("IPS is stopping “My Test Job”")
    assert len(soap_calls(ips_emulator, "stopJob")) == 1
    assert page.console_errors == []
