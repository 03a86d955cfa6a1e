"""The admin's audit trail in Chromium (issue 20): axe-core finds no serious or critical violation on the
executions list and on one execution's page, in English and Italian, at 1280 and 390 px.

The execution is real: a press of Run against the emulator, followed to its IPS result by the watcher."""

import os

import pytest

from .axe import serious, signed_in
from .conftest import RUN_SECONDS, SUPERUSER, look, press_run
from .test_browser import CHROMIUM, WAIT, chromium  # noqa: F401 (chromium: the module's browser)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's Chromium at {CHROMIUM}"),
]


@pytest.fixture
def finished_run(job, users, clock, ips_emulator):
    """My Test Job, pressed by ipsuser and ended in IPS with warnings, as the watcher recorded it."""
    ips_emulator.state.jobs[job.handle].outcome = "warnings"
    execution = press_run(job, users["IpsUser"], "a11y-admin")
    look(job.company)
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_result == "warnings", execution.ips_result
    return execution


@pytest.mark.parametrize("locale, language", [("en-US", "en"), ("it-IT", "it")])
@pytest.mark.parametrize("width", [1280, 390])
def test_the_admin_executions_pass_axe(width, locale, language, chromium, live_server, transactional_db,  # noqa: F811
                                       finished_run):
    base = live_server.url
    context, page, errors = signed_in(chromium, base, width, locale, "admin", admin=True, wait=WAIT)
    try:
        pages = {
            "the executions": f"{base}/admin/jobs/execution/",
            "one execution": f"{base}/admin/jobs/execution/{finished_run.pk}/change/",
        }
        for name, url in pages.items():
            page.goto(url)
            page.wait_for_load_state("networkidle")
            # The page is in the browser's language (LocaleMiddleware), the admin's own texts included.
            assert page.locator("html").get_attribute("lang") == language, (name, locale)
            found = serious(page)
            assert found == [], f"{name}, {width} px, {locale}:\n" + "\n".join(found)
        assert errors == []
    finally:
        context.close()


def _admin_forms(base, admin_user):
    """Every registered model's add form (where a superuser may add) and its first object's change form."""
    from django.contrib import admin
    from django.test import RequestFactory
    from django.urls import reverse

    request = RequestFactory().get("/admin/")
    request.user = admin_user
    pages = {}
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        name = f"{opts.app_label}.{opts.model_name}"
        if model_admin.has_add_permission(request):
            pages[f"{name} add"] = base + reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            pages[f"{name} {first.pk}"] = base + reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk])
    return pages


@pytest.mark.parametrize("locale, language", [("en-US", "en"), ("it-IT", "it")])
@pytest.mark.parametrize("width", [1280, 390])
def test_the_admin_forms_pass_axe(width, locale, language, chromium, live_server, transactional_db,  # noqa: F811
                                  finished_run, users):
    """Issue 20 (review M3): every add form and one change form of each admin model, the inlines', split
    date-times', select2 autocompletes' and delete boxes' fields named, in both languages, at both widths."""
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.create(name="Operators")
    group.permissions.add(*Permission.objects.filter(codename__endswith="_job"))
    users["IpsUser"].groups.add(group)
    pages = _admin_forms(live_server.url, users[SUPERUSER])
    # The forms the review found failing are among them.
    for must in ("auth.user add", "jobs.company add", "jobs.job add", "jobs.membership add", "auth.group add"):
        assert must in pages, sorted(pages)
    base = live_server.url
    context, page, errors = signed_in(chromium, base, width, locale, "admin", admin=True, wait=WAIT)
    try:
        failures = []
        for name, url in pages.items():
            response = page.goto(url)
            assert response.status == 200, (name, response.status)
            page.wait_for_load_state("networkidle")
            assert page.locator("html").get_attribute("lang") == language, (name, locale)
            found = serious(page)
            if found:
                failures.append(f"{name}:\n  " + "\n  ".join(found))
        assert failures == [], f"{width} px, {locale}:\n" + "\n".join(failures)
        assert errors == []
    finally:
        context.close()
