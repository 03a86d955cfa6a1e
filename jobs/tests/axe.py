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
