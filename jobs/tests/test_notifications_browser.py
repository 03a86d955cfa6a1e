"""The notification settings in a phone-sized Chromium (360 px), by keyboard, in English and Italian.

Every control is reached by its label or its role's name (what a screen reader announces), the page
never scrolls sideways, and no console error (a CSP violation included) is raised."""

import pytest

from jobs.models import Subscription

from .test_browser import chromium  # noqa: F401  (fixture)
from .test_browser import pytestmark  # noqa: F401  (browser marker, skip without Chromium)


def _phone(chromium, **options):  # noqa: F811
    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": 360, "height": 780}, **options)
    context.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    return context, page


def _no_sideways_scroll(page):
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 360, f"the page is {width} px wide at 360 px"


@pytest.mark.parametrize("locale", ["en-US", "it-IT"])
def test_a_user_subscribes_pauses_and_removes_by_keyboard_at_360_px(
    chromium, live_server, transactional_db, users, company, locale  # noqa: F811
):
    from django.utils import translation
    from playwright.sync_api import expect

    # The names a screen reader reads, in the page's language (English until a msgid is translated).
    with translation.override(locale[:2]):
        words = {k: translation.gettext(v) for k, v in {
            "about": "About", "pause": "Pause", "remove": "Remove", "by": "By"}.items()}
    context, page = _phone(chromium, locale=locale)
    try:
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", "ipsuser")
        page.fill("#id_password", "pw")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{live_server.url}/")
        page.goto(f"{live_server.url}/settings/")
        _no_sideways_scroll(page)
        page.get_by_label(words["about"], exact=True).select_option(f"company:{company.pk}")
        page.locator("input[name=sub-results][value=on_errors]").check()
        page.get_by_label(words["by"], exact=True).select_option("email")
        page.get_by_label(words["by"], exact=True).focus()
        page.keyboard.press("Tab")  # the address
        page.keyboard.press("Tab")  # Add
        page.keyboard.press("Enter")
        expect(page.get_by_role("button", name=words["pause"])).to_be_visible()
        sub = Subscription.objects.get(user=users["IpsUser"])
        assert (sub.company, sub.on_errors, sub.on_fatal) == (company, True, False)
        _no_sideways_scroll(page)

        page.get_by_role("button", name=words["pause"]).focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("button", name=f"{words['pause']}")).to_have_count(0)
        sub.refresh_from_db()
        assert sub.paused
        page.get_by_role("button", name=words["remove"]).click()
        expect(page.get_by_role("button", name=words["remove"])).to_have_count(0)
        assert not Subscription.objects.exists()
        assert page.console_errors == []
    finally:
        context.close()
