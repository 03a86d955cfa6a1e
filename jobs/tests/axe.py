"""axe-core (through axe-playwright-python, which bundles it) on a Playwright page.

``serious(page)`` runs axe on the page as it is now and returns its serious and
critical violations, each as one readable line, so a test can assert ``== []``
and a failure names the rule, the impact and the elements it found."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe

# WCAG 2.0–2.2 A and AA and axe's best practices: what issue 20 holds every page to.
OPTIONS = {"resultTypes": ["violations"]}
BLOCKING = {"serious", "critical"}

_axe = Axe()


def violations(page, context=None) -> list[dict]:
    """Every violation axe finds on the page (or in ``context``, a CSS selector), as axe gives it."""
    return _axe.run(page, context=context, options=OPTIONS).response["violations"]


def serious(page, context=None) -> list[str]:
    """The serious and critical violations, one line each: rule, impact, the first elements' selectors."""
    found = []
    for v in violations(page, context):
        if v.get("impact") in BLOCKING:
            targets = ", ".join(" ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])[:5])
            found.append(f"{v['id']} ({v['impact']}, {len(v.get('nodes', []))} nodes): {v['help']} — {targets}")
    return found


def signed_in(chromium, base: str, width: int, locale: str, username: str, *, admin: bool = False,
              password: str = "pw", wait: int = 20_000):
    """A browser context of ``width`` × 860 px in ``locale``, signed in through the dashboard's (or with
    ``admin``, the Django admin's) login form by Enter: (context, page, errors), ``errors`` the page's
    script errors as they come."""
    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": width, "height": 860}, locale=locale)
    context.set_default_timeout(wait)
    expect.set_options(timeout=wait)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login, landing = ("/admin/login/", "/admin/") if admin else ("/accounts/login/", "/")
    page.goto(f"{base}{login}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{base}{landing}")
    return context, page, errors
