"""Italian everywhere (issue 20): an Italian browser walks every dashboard and admin page and finds no
English UI string outside IPS names, user data and stored records.

The English strings looked for are the msgids, of the project's catalogue and of Django's (the admin's,
auth's, its core), whose Italian differs from them. Data is not UI: every text value stored in the
database (names, handles, recorded messages) is taken out of a page's text before it is read, and so is
what IPS itself wrote (the run's IPS log). Schedules in words are checked word for word in both languages.
"""

import gettext
import os
import re
from pathlib import Path

import django
import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import trans_real

from jobs import ipsversions
from jobs.models import Company, DeliveryAttempt, IpsIdentity, MembershipChange, Notification, Subscription
from jobs.roles import UserType
from jobs.schedules import describe
from jobs.services import base, exports, people

from .conftest import RUN_SECONDS, look, press_run
from .test_browser import CHROMIUM, WAIT, chromium  # noqa: F401 (chromium: the module's browser)

DJANGO = Path(django.__file__).parent
#: The Italian catalogues a page of ours draws on: ours, then Django's admin, auth and core.
CATALOGUES = [
    Path(settings.LOCALE_PATHS[0]) / "it" / "LC_MESSAGES" / "django.mo",
    DJANGO / "contrib" / "admin" / "locale" / "it" / "LC_MESSAGES" / "django.mo",
    DJANGO / "contrib" / "auth" / "locale" / "it" / "LC_MESSAGES" / "django.mo",
    DJANGO / "conf" / "locale" / "it" / "LC_MESSAGES" / "django.mo",
]

# --- Schedules in words ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "schedule, zone, english, italian",
    [
        ("00 00 00 * * ", "PST", "every day at 00:00 PST", "ogni giorno alle 00:00 PST"),
        ("00 30 02 * * ", "PST", "every day at 02:30 PST", "ogni giorno alle 02:30 PST"),
        ("00 15 * * * ", "PST", "every hour at :15", "ogni ora a :15"),
        ("00 00 01 * * 1", "PST", "every Monday at 01:00 PST", "ogni lunedì alle 01:00 PST"),
        ("00 00 03 * * 0", "JST", "every Sunday at 03:00 JST", "ogni domenica alle 03:00 JST"),
        ("00 00 04 1 * ", "JST", "on the 1st of every month at 04:00 JST", "il giorno 1 di ogni mese alle 04:00 JST"),
        ("0 30 2 ? * MON-FRI", "PST", "Monday to Friday at 02:30 PST", "da lunedì a venerdì alle 02:30 PST"),
        ("0 0 12 ? * MON,WED,FRI", "", "every Monday, Wednesday and Friday at 12:00",
         "ogni lunedì, mercoledì e venerdì alle 12:00"),
        ("0 0 4 ? * SAT,SUN", "CET", "every Saturday and Sunday at 04:00 CET", "ogni sabato e domenica alle 04:00 CET"),
        # The ordinal agrees with the day: Sunday is feminine in Italian.
        ("0 0 4 ? * 6L", "CET", "on the last Saturday of every month at 04:00 CET",
         "l'ultimo sabato di ogni mese alle 04:00 CET"),
        ("0 0 4 ? * SUNL", "CET", "on the last Sunday of every month at 04:00 CET",
         "l'ultima domenica di ogni mese alle 04:00 CET"),
        ("0 0 4 ? * FRI#2", "CET", "on the second Friday of every month at 04:00 CET",
         "il secondo venerdì di ogni mese alle 04:00 CET"),
        ("0 0 4 ? * SUN#1", "CET", "on the first Sunday of every month at 04:00 CET",
         "la prima domenica di ogni mese alle 04:00 CET"),
        ("0 0 4 L * ?", "CET", "on the last day of every month at 04:00 CET",
         "l'ultimo giorno di ogni mese alle 04:00 CET"),
        ("0 0 4 LW * ?", "CET", "on the last weekday of every month at 04:00 CET",
         "l'ultimo giorno feriale di ogni mese alle 04:00 CET"),
        ("0 0 4 15W * ?", "CET", "on the weekday nearest the 15th of every month at 04:00 CET",
         "il giorno feriale più vicino al giorno 15 di ogni mese alle 04:00 CET"),
        # One day or several: "il giorno", "i giorni".
        ("0 0 4 1,15 * ?", "CET", "on the 1st and 15th of every month at 04:00 CET",
         "i giorni 1 e 15 di ogni mese alle 04:00 CET"),
        ("0 0 4 1 1,7 ?", "CET", "on the 1st of January and July at 04:00 CET",
         "il giorno 1 di gennaio e luglio alle 04:00 CET"),
        ("0 0 4 * JAN ?", "CET", "every day in January at 04:00 CET", "ogni giorno di gennaio alle 04:00 CET"),
        ("0 0 4 ? JUN MON", "CET", "every Monday in June at 04:00 CET", "ogni lunedì di giugno alle 04:00 CET"),
        ("0 0 4 ? * MON-FRI 2027", "PST", "Monday to Friday at 04:00 PST in 2027",
         "da lunedì a venerdì alle 04:00 PST nel 2027"),
        ("0 0 4 ? * MON-FRI 2027,2028", "PST", "Monday to Friday at 04:00 PST in 2027 and 2028",
         "da lunedì a venerdì alle 04:00 PST negli anni 2027 e 2028"),
        ("0 0/15 * * * ?", "PST", "every 15 minutes", "ogni 15 minuti"),
        ("0 15,45 * * * ?", "PST", "every hour at :15 and :45", "ogni ora a :15 e :45"),
        ("0 0 */6 * * ?", "UTC", "every day at 00:00, 06:00, 12:00 and 18:00 UTC",
         "ogni giorno alle 00:00, 06:00, 12:00 e 18:00 UTC"),
        ("0 0 8-18 * * MON-FRI", "CET", "Monday to Friday, every hour from 08:00 to 18:00 CET",
         "da lunedì a venerdì, ogni ora dalle 08:00 alle 18:00 CET"),
        ("0 0 0/12 * * ?", "CET", "every day at 00:00 and 12:00 CET", "ogni giorno alle 00:00 e 12:00 CET"),
        ("0 0/30 * * * MON-FRI", "CET", "Monday to Friday, every 30 minutes", "da lunedì a venerdì, ogni 30 minuti"),
        ("15 30 2 * * ?", "PST", "every day at 02:30:15 PST", "ogni giorno alle 02:30:15 PST"),
    ],
)
def test_schedules_in_words_in_english_and_italian(schedule, zone, english, italian):
    with translation.override("en"):
        assert describe(schedule, zone) == english
    with translation.override("it"):
        assert describe(schedule, zone) == italian


@pytest.mark.parametrize("schedule", ["0 0 9-17/2 * * ?", "* * * * * ?", "0 0 4 1 * MON"])
def test_a_schedule_not_understood_is_left_raw_in_italian_too(schedule):
    with translation.override("it"):
        assert describe(schedule, "PST") is None


def test_the_jobs_page_says_the_schedule_in_italian_and_the_raw_string_as_ips_gives_it(client, login, synced):
    login("IpsUser")
    body = client.get(reverse("jobs:list"), HTTP_ACCEPT_LANGUAGE="it-IT,it;q=0.9").content.decode()
    assert ">ogni giorno alle 00:00 PST</span>" in body
    assert "00 00 00 * * " in body  # the raw string, as IPS gives it, on hover


# --- The walk -----------------------------------------------------------------------------------------------------

def english_ui_strings() -> tuple[set[str], list[tuple[str, re.Pattern]]]:
    """(msgids without placeholders, [(msgid, pattern)] for those with) whose Italian differs from them.

    A msgid that is also Italian somewhere in the catalogues ("Handle", "file") proves nothing: left out."""
    plain, patterns, italian_words = set(), [], set()
    for path in CATALOGUES:
        with path.open("rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog
        for key, italian in catalog.items():
            italian_words.add(" ".join(italian.split()).strip(" :.").lower())
            msgid = key[0] if isinstance(key, tuple) else key
            msgid = msgid.rpartition("\x04")[2]  # no context
            if not msgid or italian == msgid:
                continue
            words = " ".join(msgid.split())
            if "%(" in words or "{" in words or "%s" in words or "%d" in words:
                literal = re.split(r"%\(\w+\)[sd]|%[sd]|\{\w*\}", words)
                # Only placeholders and punctuation ("%(a)s: %(b)s") says nothing English.
                if sum(len(re.sub(r"[^A-Za-z]", "", part)) for part in literal) >= 8:
                    patterns.append((msgid, re.compile(r".+?".join(re.escape(part) for part in literal))))
            else:
                plain.add(words)
    return {m for m in plain if m.strip(" :.").lower() not in italian_words}, patterns


#: Texts of a page read by the browser: visible text nodes, and the names and hints of controls.
READ_TEXTS = """() => {
    const texts = [];
    const walker = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const parent = node.parentElement;
        if (!parent || parent.closest('script, style, noscript, template')) continue;
        // What IPS itself wrote (the run's log from getJobLogDetails) is IPS's, not the dashboard's.
        if (parent.closest('[data-ips-text], #log-details td')) continue;
        texts.push(node.textContent);
    }
    for (const el of document.querySelectorAll('[aria-label], [title], [placeholder], [alt]')) {
        for (const name of ['aria-label', 'title', 'placeholder', 'alt']) {
            if (el.hasAttribute(name)) texts.push(el.getAttribute(name));
        }
    }
    for (const el of document.querySelectorAll('input[type=submit], input[type=button], input[type=reset]')) {
        texts.push(el.value);
    }
    return texts;
}"""


def stored_texts() -> list[str]:
    """Every text stored in the database (names, handles, recorded messages): data, not UI.

    A field with choices is left out: its labels are the page's words, not data."""
    found = set()
    for model in django.apps.apps.get_models():
        fields = [f.attname for f in model._meta.concrete_fields
                  if isinstance(f, (models.CharField, models.TextField, models.EmailField)) and not f.choices]
        if not fields:
            continue
        for row in model._default_manager.values_list(*fields):
            found.update(v for v in row if isinstance(v, str) and len(v.strip()) > 1)
    found.update(name for _, name in settings.LANGUAGES)  # each language named in its own language
    return sorted(found, key=len, reverse=True)


def english_on(texts: list[str], data: list[str], plain: set[str], patterns) -> list[str]:
    """The English UI strings in a page's texts, once data is taken out."""
    # A phrase of several words within a longer text ("Log out" in "Welcome … Log out"): one regex for all.
    phrases = sorted((m for m in plain if " " in m and len(m) > 6), key=len, reverse=True)
    within = re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, phrases)) + r")(?![\w-])")
    found = []
    for text in texts:
        text = " ".join(text.split())
        for value in data:
            if value in text:
                text = text.replace(value, " ")
        text = " ".join(text.split())
        if not re.search(r"[A-Za-z]{2}", text):
            continue
        bare = text.strip(" :.,;()—·|*›«»\"“”")
        if bare in plain:
            found.append(bare)
            continue
        found += within.findall(text)
        found += [msgid for msgid, pattern in patterns if pattern.fullmatch(bare)]
    return found


@pytest.fixture
def everything(job, users, clock, ips_emulator, settings, tmp_path):
    """A row in every model the admin shows, made the way the dashboard makes them."""
    settings.EXPORTS_DIR = tmp_path / "exports"
    ips_emulator.state.jobs[job.handle].outcome = "warnings"
    execution = press_run(job, users["IpsUser"], "walk-0001")
    look(job.company)
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_result == "warnings", execution.ips_result
    admin_user = get_user_model().objects.get(username="admin")
    people.change_membership(admin_user, users["IpsUser"], job.company, "IpsAdmin", MembershipChange.Source.ADMIN)
    people.change_membership(admin_user, users["IpsUser"], job.company, "IpsUser", MembershipChange.Source.ADMIN)
    subscription = Subscription.objects.create(
        user=users["IpsUser"], scope=Subscription.Scope.COMPANY, company=job.company, on_errors=True,
        channel=Subscription.Channel.EMAIL,
    )
    notification = Notification.objects.create(
        kind=Notification.Kind.RUN_ENDED, event_id=execution.pk, subscription=subscription, recipient="ipsuser",
        channel=Subscription.Channel.EMAIL, what="warnings", state=Notification.State.SENT, attempts=1,
        sent_at=timezone.now(),
    )
    DeliveryAttempt.objects.create(notification=notification, ok=True)
    IpsIdentity.objects.create(user=users["IpsUser"], connection=job.company.connection, email="ipsuser@example.com",
                               user_handle="u|1", default_role="IpsUser", read_at=timezone.now())
    export = exports.request_export(admin_user, {}, base.RequestInfo("walk-export"), "Europe/Rome")
    # A company whose last sync failed: its error is IPS's, recorded; the words around it are the page's.
    Company.objects.filter(pk=job.company.pk).update(sync_error="IPS unreachable: connection refused",
                                                     sync_failed_at=timezone.now())
    return {"execution": execution, "export": export}


def _admin_pages(base_url, request_user) -> dict[str, str]:
    """For every registered model: its changelist, one row's change form, its add form when adding is allowed."""
    pages = {"admin index": f"{base_url}{reverse('admin:index')}"}
    apps = set()

    class _Request:
        user = request_user

    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        apps.add(opts.app_label)
        name = f"{opts.app_label}.{opts.model_name}"
        pages[f"{name} list"] = f"{base_url}{reverse(f'admin:{opts.app_label}_{opts.model_name}_changelist')}"
        row = model._default_manager.order_by("pk").first()
        if row is not None:
            pages[f"{name} #{row.pk}"] = base_url + reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk])
        if model_admin.has_add_permission(_Request()):
            pages[f"{name} add"] = f"{base_url}{reverse(f'admin:{opts.app_label}_{opts.model_name}_add')}"
    for app in sorted(apps):
        pages[f"{app} app index"] = f"{base_url}{reverse('admin:app_list', args=[app])}"
    return pages


def _walk(page, pages: dict[str, str]) -> list[str]:
    plain, patterns = english_ui_strings()
    data = stored_texts()
    failures = []
    for name, url in pages.items():
        response = page.goto(url)
        assert response.status == 200, (name, url, response.status)
        assert page.locator("html").get_attribute("lang") == "it", name
        for text in sorted(set(english_on(page.evaluate(READ_TEXTS), data, plain, patterns))):
            failures.append(f"{name}: {text}")
    return failures


def _log_in(page, base_url, path="/accounts/login/", then="/"):
    page.goto(f"{base_url}{path}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{base_url}{then}")


@pytest.fixture
def italian(chromium):  # noqa: F811
    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": 1280, "height": 860}, locale="it-IT")
    context.set_default_timeout(WAIT)
    expect.set_options(timeout=WAIT)
    yield context.new_page()
    context.close()


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's Chromium at {CHROMIUM}")
def test_an_italian_browser_finds_no_english_on_any_page(italian, live_server, transactional_db, job, users,
                                                         everything):
    page, base_url = italian, live_server.url
    admin_user = get_user_model().objects.get(username="admin")
    # The login page, before anyone signs in.
    failures = _walk(page, {"login": f"{base_url}/accounts/login/"})
    _log_in(page, base_url)
    execution, export = everything["execution"], everything["export"]
    failures += _walk(page, {
        "jobs": f"{base_url}/",
        "a job": f"{base_url}/jobs/{job.pk}/",
        "a run": f"{base_url}/runs/{execution.pk}/",
        "History": f"{base_url}/history/",
        "an export": f"{base_url}/history/exports/{export.pk}/",
        "Settings": f"{base_url}/settings/",
        "membership history": f"{base_url}/history/memberships/",
    })
    failures += _walk(page, _admin_pages(base_url, admin_user))
    # An admin action's answer: Test connection, through the admin's own form.
    page.goto(f"{base_url}{reverse('admin:jobs_connection_changelist')}")
    page.locator("input.action-select").first.check()
    page.select_option("select[name=action]", "test_connections")
    page.locator("button[name=index], input[name=index]").first.click()
    page.wait_for_load_state("networkidle")
    assert page.locator("ul.messagelist li").count() >= 1
    plain, patterns = english_ui_strings()
    failures += [f"Test connection's answer: {text}" for text in english_on(
        page.locator("ul.messagelist").all_inner_texts(), stored_texts(), plain, patterns)]
    assert failures == [], "English on Italian pages:\n" + "\n".join(failures)


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's Chromium at {CHROMIUM}")
def test_the_walk_catches_a_string_left_in_english(italian, live_server, transactional_db, job, users, monkeypatch):
    """The walk can fail: one of Django's admin strings with its Italian taken away is found, page and string."""
    page, base_url = italian, live_server.url
    _log_in(page, base_url, "/admin/login/", "/admin/")
    index = {"admin index": f"{base_url}/admin/"}
    before = _walk(page, index)
    catalog = trans_real.translation("it")._catalog
    assert catalog["Log out"] != "Log out"
    monkeypatch.setitem(catalog, "Log out", "Log out")
    assert [f for f in _walk(page, index) if f not in before] == ["admin index: Log out"]


# --- Every label of the admin, read from the admin itself -----------------------------------------------------

#: Words Italian writes as English does (IPS's and the web's own terms): the same in both is right for them.
SAME_IN_ITALIAN = {
    "handle", "file", "ok", "id", "password", "email", "user agent", "traceback", "Slack", "Microsoft Teams", "HTTP Accept", "Axes",
    # IPS's names: its user types and API releases.
    *UserType.labels, *(v.release for v in ipsversions.VERSIONS), *(str(v.label) for v in ipsversions.VERSIONS if v.key),
}


def _admin_labels():
    """(where, label) for every label the admin shows of a registered model: app and model names, field names,
    help texts and choices, list columns, filters, actions, fieldset titles and the search hint."""
    from django.contrib.admin.utils import label_for_field

    for model, model_admin in admin.site._registry.items():
        opts, where = model._meta, model._meta.label
        yield where, opts.app_config.verbose_name
        yield where, opts.verbose_name
        yield where, opts.verbose_name_plural
        for field in opts.get_fields():
            if not hasattr(field, "verbose_name") or field.auto_created:
                continue
            yield f"{where}.{field.name}", field.verbose_name
            if field.help_text:
                yield f"{where}.{field.name} help", field.help_text
            for _value, label in field.flatchoices if field.choices else []:
                yield f"{where}.{field.name} choice", label
        for name in model_admin.list_display:
            if name != "__str__":
                yield f"{where} column {name}", label_for_field(name, model, model_admin)
        for item in model_admin.list_filter:
            if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
                yield f"{where} filter", item.title
        for action in model_admin.actions or []:
            function = getattr(model_admin, action) if isinstance(action, str) else action
            yield f"{where} action", getattr(function, "short_description", "")
        for title, _options in model_admin.fieldsets or []:
            if title:
                yield f"{where} fieldset", title
        if model_admin.search_help_text:
            yield f"{where} search", model_admin.search_help_text


def test_every_admin_label_reads_in_italian():
    """Ours, Django's and the third parties' (axes, django-tasks-db ship no Italian: jobs/admin/lockouts.py, tasks.py)."""
    untranslated = set()
    for where, label in _admin_labels():
        with translation.override("en"):
            english = str(label)
        with translation.override("it"):
            italian = str(label)
        if english == italian and re.search(r"[A-Za-z]{2}", english) and english not in SAME_IN_ITALIAN:
            untranslated.add(f"{where}: {english}")
    assert not untranslated, "Admin labels with no Italian:\n" + "\n".join(sorted(untranslated))
