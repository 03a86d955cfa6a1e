"""The newcomer's walk, in Debian's Chromium driven by Playwright.

Logs in as ipsuser, runs My Test Job through the htmx button, sees the result
and the history row, then logs in as ipscompanyadmin and sees why Run is
disabled. Any console error (a CSP violation included) fails the test.
"""

import os
import re
from pathlib import Path

import pytest

from jobs.models import Execution

from .conftest import executes, look

CHROMIUM = "/usr/bin/chromium"
#: Playwright's longest wait for a page or an expectation.
WAIT = 20_000
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's Chromium at {CHROMIUM}"),
]

# Playwright's sync API runs an event loop in this thread; the ORM calls the
# test itself makes are synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    yield from _page(chromium)


@pytest.fixture
def italian_page(chromium):
    """A browser whose user reads Italian (it sends Accept-Language: it-IT)."""
    yield from _page(chromium, locale="it-IT")


def _page(chromium, **options):
    context, page = new_page(chromium, **options)
    yield page
    context.close()


def new_page(chromium, width: int = 1280, **options):
    """(context, page): a new browser context ``width`` × 860 px; the page keeps every console error
    (``page.console_errors``) but the failed loads of refusals."""
    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": width, "height": 860}, **options)
    # An upper bound on waiting for what must happen, not a delay: the suite
    # may share two CPUs with workers and PostgreSQL (5 s, the default, is short).
    context.set_default_timeout(WAIT)
    expect.set_options(timeout=WAIT)
    page = context.new_page()
    page.console_errors = []
    # Refusals answer 403/409/502/504 on purpose; the browser logs those as
    # failed loads. Anything else (a CSP violation, a script error) counts.
    page.on(
        "console",
        lambda m: m.type == "error"
        and not m.text.startswith("Failed to load resource: the server responded with a status of")
        and page.console_errors.append(m.text),
    )
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    return context, page


def _confirm(page, answer="ok") -> str:
    """Answer the page's in-page confirm (base.html's <dialog>, not the browser's confirm()): its question."""
    from playwright.sync_api import expect

    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    question = page.locator("#confirm-question").inner_text()
    dialog.locator(f"button[value={answer}]").click()
    expect(dialog).to_be_hidden()
    return question


def _log_in(page, base, username):
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")


def test_a_newcomer_runs_a_job_and_a_company_admin_sees_why_not(
    page, live_server, transactional_db, users, job, ips_emulator, ips_clock
):
    from playwright.sync_api import expect

    base = live_server.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # The run moves only when the test moves the emulator's clock.
    ips_emulator.state.job_duration = 10
    _log_in(page, base, "ipsuser")
    row = page.locator(f"#job-{job.pk}")
    expect(row).to_contain_text("My Test Job")

    row.get_by_role("button", name="Run").click()
    assert _confirm(page) == "Run “My Test Job” in company 47 (Demo Company) now?"
    expect(page.locator("#messages")).to_contain_text("IPS accepted “My Test Job” and is running it now.")
    expect(page.locator(f"#job-{job.pk}")).to_contain_text("accepted")
    expect(page.locator(f"#job-{job.pk}")).to_contain_text("ipsuser")
    page.screenshot(path=str(SCREENSHOTS / "jobs.png"), full_page=True)

    execution = Execution.objects.get()
    assert execution.outcome == "accepted" and execution.username == "ipsuser"
    assert len(executes(ips_emulator)) == 1

    # The company's watcher looks (a look of `manage.py watch_ips`, driven here); the page shows what
    # it recorded: Active in IPS lists the run by its IPS name, and Run waits for it to end.
    look(job.company)
    page.reload()
    expect(page.locator(f"#active-{job.company.pk}")).to_contain_text("My Test Job_")
    expect(page.locator(f"#action-{job.pk}")).to_contain_text("Running in IPS")
    expect(page.locator(f"#action-{job.pk}").get_by_role("button", name="Stop")).to_be_visible()
    expect(page.locator(f"#active-{job.company.pk} button.run")).to_have_count(0)
    # The row follows the run in IPS (htmx polling): halfway, then until its log is there.
    status = page.locator(f"#job-{job.pk} .ips-status")
    ips_clock.advance(5)
    look(job.company)
    expect(status).to_contain_text("Running 50%")
    ips_clock.advance(5)
    look(job.company)
    expect(status).to_contain_text("IPS log: 4 ok")

    page.click("text=History")
    # htmx is a deferred script: let it process the page before using the filters.
    page.wait_for_url(f"{base}/history/")
    page.wait_for_load_state("load")
    expect(page.locator(f"#execution-{execution.pk}")).to_contain_text("My Test Job")
    expect(page.locator(f"#execution-{execution.pk}")).to_contain_text("accepted")
    page.select_option("#id_outcome", "denied")
    expect(page.locator("#results")).not_to_contain_text("accepted")
    expect(page).to_have_url(re.compile(r"outcome=denied"))
    page.screenshot(path=str(SCREENSHOTS / "history.png"), full_page=True)

    page.click("text=Log out")
    _log_in(page, base, "ipscompanyadmin")
    button = page.locator(f"#job-{job.pk}").get_by_role("button", name="Run")
    expect(button).to_be_disabled()
    reason = "Your role IpsCompanyAdmin in company 47 cannot run jobs (executeJob)."
    expect(button).to_have_attribute("title", reason)
    expect(page.locator("#company-%d" % job.company.pk)).to_contain_text(reason)
    page.screenshot(path=str(SCREENSHOTS / "company-admin.png"), full_page=True)

    assert page.console_errors == []
    assert Execution.objects.count() == 1  # Run waited for IPS: no second press was possible


def test_an_ips_refusal_shows_its_fault_code(page, live_server, transactional_db, users, job, ips_emulator):
    from playwright.sync_api import expect

    ips_emulator.state.inject(
        "soap_fault", operation="executeJob", fault="ipsApiFault", code=30000, reason="Disk <full>"
    )
    _log_in(page, live_server.url, "ipsuser")
    page.locator(f"#job-{job.pk}").get_by_role("button", name="Run").click()
    _confirm(page)
    expect(page.locator("#messages")).to_contain_text("30000 EXCEPTION — Disk <full>")
    expect(page.locator(f"#job-{job.pk}")).to_contain_text("refused by IPS")
    assert page.console_errors == []
    assert Execution.objects.get().fault_code == 30000


def test_a_refresh_of_active_in_ips_during_a_press_keeps_the_press_answer(
    page, live_server, transactional_db, users, job, ips_emulator
):
    """Active in IPS re-draws every Run cell while a press is on its way: the press's
    message still arrives (it was lost, htmx:oobErrorNoTarget, about one press in ten)."""
    from playwright.sync_api import expect

    ips_emulator.state.inject(
        "soap_fault", operation="executeJob", fault="ipsApiFault", code=30000, reason="Disk <full>"
    )
    _log_in(page, live_server.url, "ipsuser")
    page.wait_for_load_state("networkidle")
    held = []
    page.route(re.compile(r"/jobs/\d+/run$"), lambda route: held.append(route))
    page.locator(f"#job-{job.pk}").get_by_role("button", name="Run").click()
    _confirm(page)
    page.wait_for_function("() => document.querySelector('form.htmx-request') !== null")
    # The panel asks again (as after any press, or every 5 s) and re-draws the cells.
    page.evaluate("""() => {
        window.panelDrawn = false;
        document.body.addEventListener("htmx:afterSettle", e => {
            if (e.detail.pathInfo && e.detail.pathInfo.requestPath.includes("/active")) window.panelDrawn = true;
        });
        htmx.trigger(document.body, "ips-changed");
    }""")
    page.wait_for_function("() => window.panelDrawn")
    assert len(held) == 1
    held[0].continue_()
    expect(page.locator("#messages")).to_contain_text("30000 EXCEPTION — Disk <full>")
    expect(page.locator(f"#job-{job.pk}")).to_contain_text("refused by IPS")
    assert page.console_errors == [], page.console_errors


def test_cancelling_the_confirmation_runs_nothing(page, live_server, transactional_db, users, job, ips_emulator):
    _log_in(page, live_server.url, "ipsuser")
    # htmx asks (htmx:confirm, answered by the page's <dialog>), and sends nothing when the answer is no.
    page.evaluate(
        """() => {
            window.htmxEvents = [];
            for (const name of ["htmx:confirm", "htmx:beforeRequest"]) {
                document.body.addEventListener(name, (e) => window.htmxEvents.push(e.type));
            }
        }"""
    )
    page.locator(f"#job-{job.pk}").get_by_role("button", name="Run").click()
    assert _confirm(page, "cancel") == "Run “My Test Job” in company 47 (Demo Company) now?"
    assert page.evaluate("() => window.htmxEvents") == ["htmx:confirm"]
    assert page.url == live_server.url + "/"
    assert not Execution.objects.exists()
    assert not executes(ips_emulator)


def test_the_admin_works_under_the_same_content_security_policy(page, live_server, transactional_db, users, job):
    from playwright.sync_api import expect

    base = live_server.url
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    for path in [
        "/admin/jobs/execution/",
        "/admin/jobs/connection/add/",
        f"/admin/jobs/company/{job.company.pk}/change/",
        f"/admin/auth/user/{users['IpsUser'].pk}/change/",
        "/admin/jobs/job/?q=Test",
    ]:
        response = page.goto(base + path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
    # Scripts still run: the membership inline's autocomplete (select2) opens.
    page.goto(f"{base}/admin/auth/user/{users['IpsUser'].pk}/change/")
    page.locator(".select2-selection").first.click()
    expect(page.locator(".select2-search__field")).to_be_visible()
    assert page.console_errors == []


def test_an_italian_browser_runs_a_job_in_italian_and_can_switch_to_english(
    italian_page, live_server, transactional_db, users, job, ips_emulator
):
    from playwright.sync_api import expect

    page, base = italian_page, live_server.url
    page.goto(f"{base}/accounts/login/")
    expect(page.locator("html")).to_have_attribute("lang", "it")
    page.fill("#id_username", "ipsuser")
    page.fill("#id_password", "pw")
    page.get_by_role("button", name="Accedi").click()
    page.wait_for_url(f"{base}/")
    row = page.locator(f"#job-{job.pk}")
    row.get_by_role("button", name="Esegui").click()
    assert _confirm(page) == "Eseguire “My Test Job” nell'azienda 47 (Demo Company) ora?"
    expect(row).to_contain_text("accettato")
    expect(page.locator("#messages")).to_contain_text("IPS ha accettato “My Test Job” e lo sta eseguendo ora.")
    # The record stays English.
    row = Execution.objects.get()
    assert row.outcome == "accepted" and row.message == "IPS accepted “My Test Job” and is running it now."

    # The header's switch: English from now on, on the same page, whatever the browser asks.
    page.get_by_role("button", name="English").click()
    page.wait_for_url(f"{base}/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator(f"#job-{job.pk}")).to_contain_text("accepted")
    expect(page.get_by_role("link", name="History", exact=True)).to_be_visible()
    page.goto(f"{base}/history/")
    expect(page.locator("#results")).to_contain_text("1 execution")
    # After a filter pushed its address, the switch comes back to that address.
    page.select_option("#id_outcome", "accepted")
    expect(page).to_have_url(re.compile(r"/history/\?outcome=accepted$"))
    page.get_by_role("button", name="Italiano").click()
    expect(page).to_have_url(re.compile(r"/history/\?outcome=accepted$"))
    expect(page.locator("html")).to_have_attribute("lang", "it")
    expect(page.locator("#results")).to_contain_text("1 esecuzione")
    expect(page.locator("#id_outcome")).to_have_value("accepted")
    assert page.console_errors == [], page.console_errors


def test_a_superuser_opens_a_summarized_company_and_runs_a_job_in_it(
    page, live_server, transactional_db, users, job, ips_emulator
):
    """The first view lists one company's jobs and summarizes the other; its link (by keyboard)
    loads that company's section in place, keeps it in the address, and its Run works."""
    from playwright.sync_api import expect

    from jobs.models import Company, Job

    base = live_server.url
    other = Company.objects.get(handle="48")
    target = Job.objects.filter(company=other).order_by("name").first()
    _log_in(page, base, "admin")
    summary = page.locator(f"#company-{other.pk}")
    expect(summary).to_contain_text("3 jobs")
    expect(summary.locator("tr")).to_have_count(0)
    link = page.get_by_role("link", name="Show jobs of Other Company")
    link.focus()
    page.keyboard.press("Enter")
    row = page.locator(f"#job-{target.pk}")
    expect(row).to_contain_text(target.name)
    expect(page).to_have_url(re.compile(rf"/\?open={job.company.pk}&open={other.pk}$"))
    expect(page.locator(f"#job-{job.pk}")).to_be_visible()  # the first company stays open
    # Its Active-in-IPS panel polls now that it is open.
    expect(page.locator(f"#active-{other.pk}")).to_contain_text("IPS is running nothing")

    row.get_by_role("button", name="Run").click()
    _confirm(page)
    expect(page.locator("#messages")).to_contain_text(f"IPS accepted “{target.name}”")
    expect(page.locator(f"#job-{target.pk}")).to_contain_text("accepted")
    assert Execution.objects.get().job_id == target.pk
    assert len(executes(ips_emulator)) == 1
    # A reload keeps both companies open.
    page.reload()
    expect(page.locator(f"#job-{target.pk}")).to_contain_text("accepted")
    expect(page.locator(f"#job-{job.pk}")).to_be_visible()
    assert page.console_errors == [], page.console_errors
