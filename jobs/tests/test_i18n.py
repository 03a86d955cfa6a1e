"""English and Italian: the catalogue is complete and current, and pages speak the chosen language.

The language is the browser's (Accept-Language) until someone picks one in the
header (a cookie, through Django's set_language). Audit messages stay as they
were recorded: they are the record, not the page.
"""

import gettext
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from jobs.models import Execution

from .conftest import executes, look, make_execution

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "locale" / "it" / "LC_MESSAGES"
#: What makemessages reads: the project's own code and templates (and what settings import).
SOURCES = ["manage.py", "ipsadmin", "jobs", "ipsemulator", "templates", "static"]
ITALIAN = {"HTTP_ACCEPT_LANGUAGE": "it-IT,it;q=0.9,en;q=0.5"}


def _msgids(po: Path) -> set[str]:
    """The msgids of a .po file (singular; plural forms go with them), through msgfmt's own reading."""
    # msgen fills every msgstr with its msgid: untranslated entries then compile too.
    english = subprocess.run(["msgen", str(po)], check=True, capture_output=True).stdout
    mo = po.with_suffix(".check.mo")
    subprocess.run(["msgfmt", "-o", str(mo), "-"], input=english, check=True)
    with mo.open("rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog
    mo.unlink()
    return {k[0] if isinstance(k, tuple) else k for k in catalog} - {""}


def test_every_marked_string_is_in_the_catalogue(tmp_path):
    """makemessages over a copy of the sources finds nothing the committed catalogue lacks (or keeps dead)."""
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        else:
            shutil.copy(source, tmp_path / name)
    (tmp_path / "locale" / "it" / "LC_MESSAGES").mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "manage.py", "makemessages", "--locale", "it", "--no-location", "--no-obsolete"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    extracted = _msgids(tmp_path / "locale" / "it" / "LC_MESSAGES" / "django.po")
    committed = _msgids(CATALOGUE / "django.po")
    assert extracted - committed == set(), "marked but not in the catalogue: run `make messages` and translate"
    assert committed - extracted == set(), "in the catalogue but no longer marked: run `make messages`"


def test_every_message_is_translated_with_its_placeholders():
    """msgfmt --check: no untranslated or fuzzy entry, and every %(name)s of a msgid kept in its Italian."""
    done = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", "/dev/null", str(CATALOGUE / "django.po")],
        capture_output=True, text=True, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "untranslated" not in done.stderr and "fuzzy" not in done.stderr, done.stderr
    assert " translated message" in done.stderr, done.stderr


def test_the_committed_compiled_catalogue_is_the_current_one(tmp_path):
    """The .mo that runs is the .po that was reviewed (`make messages` compiles it)."""
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(fresh), str(CATALOGUE / "django.po")], check=True)
    assert fresh.read_bytes() == (CATALOGUE / "django.mo").read_bytes()


def test_the_languages_are_english_and_italian():
    assert [code for code, _ in settings.LANGUAGES] == ["en", "it"]
    assert settings.LANGUAGE_CODE == "en"


def test_a_page_is_english_unless_the_browser_or_the_user_asks_otherwise(client, users):
    client.force_login(users["IpsUser"])
    english = client.get(reverse("jobs:history")).content.decode()
    assert '<html lang="en">' in english
    italian = client.get(reverse("jobs:history"), **ITALIAN).content.decode()
    assert '<html lang="it">' in italian


def test_the_header_switch_keeps_the_choice_and_returns_to_the_page(client, users):
    client.force_login(users["IpsUser"])
    answer = client.post(reverse("set_language"), {"language": "it", "next": "/history/?outcome=refused"})
    assert answer.status_code == 302 and answer["Location"] == "/history/?outcome=refused"
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "it"
    # The choice wins over the browser's.
    page = client.get("/history/?outcome=refused", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="it">' in page
    client.post(reverse("set_language"), {"language": "en", "next": "/history/"})
    assert '<html lang="en">' in client.get("/history/", **ITALIAN).content.decode()


def test_the_switch_goes_back_only_to_this_site(client, users):
    client.force_login(users["IpsUser"])
    answer = client.post(reverse("set_language"), {"language": "it", "next": "https://evil.example/"})
    assert answer.status_code == 302 and answer["Location"] == "/"


def test_the_switch_needs_the_csrf_token(users):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(users["IpsUser"])
    assert strict.post(reverse("set_language"), {"language": "it", "next": "/"}).status_code == 403


def test_an_audit_message_reads_as_it_was_recorded(client, users, job):
    """The record is not the page: a refusal recorded in English stays English in an Italian History."""
    row = make_execution(job, users["IpsUser"], "refused", message="IPS refused to run the job: 30000 EXCEPTION — Disk full.")
    client.force_login(users["IpsUser"])
    page = client.get(reverse("jobs:history"), **ITALIAN).content.decode()
    assert row.message in page
    assert Execution.objects.get(pk=row.pk).message == row.message


def test_the_jobs_page_speaks_italian(client, users, job):
    client.force_login(users["IpsUser"])
    page = client.get(reverse("jobs:list"), **ITALIAN).content.decode()
    for italian in (">Processi<", ">Cronologia<", ">Appartenenze<", ">Esci<", ">Esegui<", ">Sincronizza da IPS<",
                    "Eseguire “My Test Job” nell'azienda 47 (Demo Company) ora?"):
        assert italian in page, italian
    for english in (">Jobs<", ">History<", ">Log out<", ">Run<", "Run “My Test Job”"):
        assert english not in page, english
    # The languages by their own names, the current one pressed.
    assert 'value="it" lang="it" aria-pressed="true">Italiano<' in page
    assert 'value="en" lang="en">English<' in page


def test_a_run_press_answers_in_italian_and_records_in_english(client, users, job, ips_emulator):
    from .conftest import HTMX

    client.force_login(users["IpsUser"])
    answer = client.post(reverse("jobs:run", args=[job.pk]), **HTMX, **ITALIAN)
    assert answer.status_code == 200
    body = answer.content.decode()
    assert "accettato" in body  # the row's outcome label
    assert "IPS ha accettato “My Test Job” e lo sta eseguendo ora." in body
    assert "IPS accepted" not in body
    row = Execution.objects.get()
    assert row.outcome == "accepted"
    assert row.message == "IPS accepted “My Test Job” and is running it now."


def test_history_speaks_italian(client, users, job):
    make_execution(job, users["IpsUser"], "refused", message="IPS refused the run.")
    client.force_login(users["IpsUser"])
    page = client.get(reverse("jobs:history"), **ITALIAN).content.decode()
    for italian in ("Esporta CSV", "1 esecuzione", "dal più recente", "rifiutato da IPS", ">Filtra<", "Richiesto"):
        assert italian in page, italian
    for english in ("Export CSV", "1 execution ", "newest first", "refused by IPS", ">Filter<"):
        assert english not in page, english


def test_a_number_machines_read_stays_a_number_in_italian(client, users, job, ips_emulator, ips_clock):
    """<progress value> takes 45.5, never Italian's 45,5."""
    from .conftest import HTMX

    ips_emulator.state.job_duration = 10
    client.force_login(users["IpsUser"])
    client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    ips_clock.advance(5)
    look(job.company)
    page = client.get(reverse("jobs:active", args=[job.company.pk]), **HTMX, **ITALIAN).content.decode()
    assert "Avanzamento" in page
    assert '<progress max="100" value="50' in page
    assert not re.search(r'<progress max="100" value="\d+,', page)


def test_a_refusal_reads_in_italian_and_is_recorded_in_english(client, users, job, ips_emulator):
    from .conftest import HTMX

    client.force_login(users["IpsCompanyAdmin"])
    page = client.get(reverse("jobs:list"), **ITALIAN).content.decode()
    why = "Il tuo ruolo IpsCompanyAdmin nell&#x27;azienda 47 non consente di eseguire processi (executeJob)."
    assert why in page
    answer = client.post(reverse("jobs:run", args=[job.pk]), **HTMX, **ITALIAN)
    assert answer.status_code == 403
    assert why in answer.content.decode()
    row = Execution.objects.get()
    assert row.outcome == "denied"
    assert row.message == "Your role IpsCompanyAdmin in company 47 cannot run jobs (executeJob)."
    assert not executes(ips_emulator)


def test_an_ips_fault_reads_in_italian_with_the_fault_as_ips_said_it(client, users, job, ips_emulator):
    from .conftest import HTMX

    ips_emulator.state.inject("soap_fault", operation="executeJob", fault="ipsApiFault", code=30000, reason="Disk full")
    client.force_login(users["IpsUser"])
    body = client.post(reverse("jobs:run", args=[job.pk]), **HTMX, **ITALIAN).content.decode()
    assert "IPS ha rifiutato di eseguire il processo: 30000 EXCEPTION — Disk full." in body
    assert Execution.objects.get().message == "IPS refused to run the job: 30000 EXCEPTION — Disk full."


@pytest.mark.parametrize("value, english, italian", [(99.54, "99.5 %", "99,5 %"), (97, "97.0 %", "97,0 %"), (50, "50 %", "50 %")])
def test_a_rate_reads_in_the_pages_language(value, english, italian):
    from django.utils import translation

    from jobs.templatetags.ipsadmin import percent

    with translation.override("en"):
        assert percent(value) == english
    with translation.override("it"):
        assert percent(value) == italian
