"""History at scale: who sees what and why not, every filter, keyset paging, sorting,
the address as the one state (Back/Forward), and a page's queries at any size."""

import ast
import datetime as dt
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs import history
from jobs.models import Execution, Job

from .conftest import ALL_ACTORS, ANONYMOUS, HTMX, make_execution

URL = reverse("jobs:history")


def shown(response) -> list[int]:
    """The execution ids on a history page, in page order."""
    return [int(pk) for pk in re.findall(r'<tr id="execution-(\d+)"', response.content.decode())]


def ips_result(execution, result, runtime_ms=None):
    """What following the run in IPS writes on an accepted row."""
    execution.ips_result = result
    execution.ips_runtime_ms = runtime_ms
    execution.ips_result_at = timezone.now()
    execution.save()
    return execution


@pytest.fixture
def job48(synced):
    return Job.objects.filter(company__handle="48").order_by("pk").first()


@pytest.fixture
def rows(users, job, job48):
    """Rows in 47 and 48 at known times, outcomes, users and IPS results."""
    now = timezone.now()
    ago = lambda **kw: now - dt.timedelta(**kw)  # noqa: E731
    return {
        "recent": ips_result(make_execution(job, users["IpsUser"], requested_at=ago(minutes=10)), "ok", 60_000),
        "yesterday": ips_result(make_execution(job, users["IpsAdmin"], requested_at=ago(hours=30)), "errors", 240_000),
        "refused": make_execution(job, users["IpsUser"], "refused", requested_at=ago(days=3)),
        "denied": make_execution(job, users["IpsCompanyAdmin"], "denied", requested_at=ago(days=10)),
        "old": ips_result(make_execution(job, users["IpsUser"], requested_at=ago(days=45)), "warnings", 1_000),
        "other": make_execution(job48, users["othercompany"], requested_at=ago(minutes=5)),
    }


# --- Who sees what, and why not -----------------------------------------------------------

# actor -> (sees 47's rows, sees 48's, what the page says instead). getJobLogs: every type but WebServiceUser.
HISTORY_TABLE = {
    "IpsAdmin": (True, False, None),
    "IpsCompanyAdmin": (True, False, None),
    "IpsUser": (True, False, None),
    "WebServiceUser": (False, False, "Your role WebServiceUser in company 47 cannot see job history (getJobLogs)."),
    "TrialSiteAdmin": (True, False, None),
    "TrialSiteUser": (True, False, None),
    "ImagePortalAdmin": (True, False, None),
    "ImagePortalUser": (True, False, None),
    "ImagePortalContrib": (True, False, None),
    "ImagePortalContribUser": (True, False, None),
    "nomember": (False, False, "You have no role in any company yet"),
    "othercompany": (False, True, None),
    "admin": (True, True, None),
    "anonymous": None,
}


def test_the_history_table_covers_every_actor():
    assert sorted(HISTORY_TABLE) == sorted(ALL_ACTORS)


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_history_role_table(actor, client, login, rows):
    login(actor)
    response = client.get(URL)
    if actor == ANONYMOUS:
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
        return
    assert response.status_code == 200
    sees_47, sees_48, instead = HISTORY_TABLE[actor]
    ids = set(shown(response))
    assert (rows["recent"].pk in ids) is sees_47
    assert (rows["other"].pk in ids) is sees_48
    body = response.content.decode()
    if instead:
        # Why, instead of "No executions match"; and no filters to try.
        assert instead in body
        assert "No executions match" not in body and 'id="history-filters"' not in body
        assert "My Test Job" not in body
    else:
        assert 'id="history-filters"' in body


def test_a_user_with_history_in_one_company_is_told_why_not_in_another(client, login, users, rows, other_company):
    from jobs.models import Membership

    Membership.objects.create(user=users["IpsUser"], company=other_company, role="WebServiceUser")
    login("IpsUser")
    response = client.get(URL)
    assert "Your role WebServiceUser in company 48 cannot see job history (getJobLogs)." in response.content.decode()
    assert rows["recent"].pk in shown(response) and rows["other"].pk not in shown(response)


def test_filters_cannot_reach_a_foreign_company_or_job(client, login, rows, job):
    login("othercompany")
    body = client.get(URL, {"company": job.company.pk}).content.decode()
    assert "Select a valid choice" in body and "Demo Company" not in body
    response = client.get(URL, {"job": job.pk})
    assert "No such job in your companies." in response.content.decode()
    assert shown(response) == [] and "My Test Job" not in response.content.decode()


# --- Filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, ["other", "recent", "yesterday", "refused", "denied", "old"]),
        ({"range": "1h"}, ["other", "recent"]),
        ({"range": "24h"}, ["other", "recent"]),
        ({"range": "7d"}, ["other", "recent", "yesterday", "refused"]),
        ({"range": "30d"}, ["other", "recent", "yesterday", "refused", "denied"]),
        ({"outcome": "refused"}, ["refused"]),
        ({"outcome": "denied"}, ["denied"]),
        ({"ips_result": "errors"}, ["yesterday"]),
        ({"ips_result": "warnings"}, ["old"]),
        ({"user": "ipsuser"}, ["recent", "refused", "old"]),
        ({"user": "IPSUSER"}, ["recent", "refused", "old"]),
        # A part of a name: every user it matches (ipsadmin, ipscompanyadmin, imageportaladmin, ...).
        ({"user": "ADMIN"[:4]}, ["yesterday", "denied"]),
        ({"user": "compan"}, ["other", "denied"]),
        # A whole name: that user only ("admin" is in ipsadmin too).
        ({"user": "admin"}, []),
        ({"job_name": "my test"}, ["recent", "yesterday", "refused", "denied", "old"]),
        ({"outcome": "accepted", "range": "30d"}, ["other", "recent", "yesterday"]),
    ],
)
def test_each_filter(params, expected, client, login, rows):
    login("admin")
    response = client.get(URL, params)
    assert response.status_code == 200
    assert shown(response) == [rows[k].pk for k in expected], (params, response.content.decode()[:2000])


def test_a_whole_user_name_picks_that_user_only(client, login, users, rows):
    login("admin")
    # "admin" is also part of ipsadmin and others: the whole name wins.
    make_execution(rows["recent"].job, users["admin"], "denied")
    response = client.get(URL, {"user": "Admin"})
    assert [Execution.objects.get(pk=pk).username for pk in shown(response)] == ["admin"]


def test_a_deleted_users_runs_are_found_by_their_name(client, login, users, rows):
    login("admin")
    users["IpsUser"].delete()
    assert set(shown(client.get(URL, {"user": "ipsuser"}))) == {rows["recent"].pk, rows["refused"].pk, rows["old"].pk}


def test_mine_is_the_users_own_runs(client, login, rows):
    login("IpsUser")
    assert shown(client.get(URL, {"who": "mine"})) == [rows["recent"].pk, rows["refused"].pk, rows["old"].pk]
    login("IpsCompanyAdmin")
    assert shown(client.get(URL, {"who": "mine"})) == [rows["denied"].pk]


def test_job_by_key_and_company_by_name(client, login, rows, job):
    login("admin")
    response = client.get(URL, {"job": job.pk})
    assert rows["other"].pk not in shown(response) and len(shown(response)) == 5
    body = response.content.decode()
    assert 'class="chip"' in body and "My Test Job" in body
    assert f'<option value="{job.company.pk}">Demo Company (47)</option>' in client.get(URL).content.decode()
    assert shown(client.get(URL, {"company": rows["other"].company.pk})) == [rows["other"].pk]


def test_a_job_name_matching_too_many_jobs_says_so(client, login, rows, monkeypatch):
    from jobs.forms import HistoryFilterForm

    monkeypatch.setattr(HistoryFilterForm, "MAX_MATCHES", 1)
    login("admin")
    body = client.get(URL, {"job_name": "publish"}).content.decode()
    assert "More than 1 jobs have “publish” in their name: type more of it." in body


def test_a_custom_range_from_the_address(client, login, rows):
    login("admin")
    now = timezone.localtime()
    start = (now - dt.timedelta(days=4)).strftime("%Y-%m-%d")
    # ?from= alone: from that day on (it used to be ignored).
    assert shown(client.get(URL, {"from": start})) == [rows[k].pk for k in ("other", "recent", "yesterday", "refused")]
    # A date alone as the end: that whole day.
    end = (now - dt.timedelta(days=3)).strftime("%Y-%m-%d")
    response = client.get(URL, {"from": start, "to": end})
    assert shown(response) == [rows["refused"].pk]
    assert '<option value="custom" selected>' in response.content.decode()
    # With hours, in the user's zone.
    response = client.get(URL, {"from": (now - dt.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M")})
    assert shown(response) == [rows["other"].pk, rows["recent"].pk]


def test_a_range_that_ends_before_it_starts_is_refused_not_ignored(client, login, rows):
    login("admin")
    body = client.get(URL, {"from": "2026-11-20", "to": "2026-11-10"}).content.decode()
    assert "The end comes before the start." in body
    assert not shown(client.get(URL, {"from": "2026-11-20", "to": "2026-11-10"}))
    # "From … to …" chosen, no date typed yet: every row, no complaint.
    assert len(shown(client.get(URL, {"range": "custom"}))) == 6


def test_a_preset_replaces_the_dates_in_the_fields_and_the_address(client, login, rows):
    login("admin")
    response = client.get(URL, {"range": "7d", "from": "2020-01-01"}, **HTMX)
    assert response["HX-Push-Url"] == URL + "?range=7d"
    assert 'value="2020-01-01' not in response.content.decode()


# --- Sorting and keyset paging -----------------------------------------------------------------


@pytest.fixture
def many(users, job):
    """23 rows, four of them at the very same instant (ties are broken by id), some timed by IPS."""
    base = timezone.now() - dt.timedelta(days=2)
    made = []
    for i in range(23):
        at = base + dt.timedelta(minutes=i if not 5 <= i <= 8 else 5)
        ex = make_execution(job, users["IpsUser"], requested_at=at)
        if i % 3 == 0:
            ips_result(ex, "ok", 1000 * (i % 7) + 5)
        made.append(ex)
    return made


def _walk(client, url, direction="next"):
    """Follow the pager from ``url`` to the end: every page's ids, in order."""
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append(shown(response))
        rel = {"next": 'rel="next"', "prev": 'rel="prev"'}[direction]
        link = re.search(rf'<a href="([^"]+)"[^>]*{rel}', response.content.decode())
        url = link and link[1].replace("&amp;", "&")
    return pages


@pytest.mark.parametrize("sort", list(history.SORTS))
def test_keyset_pages_cover_every_row_once_forward_and_back(sort, client, login, many, monkeypatch):
    monkeypatch.setattr(history, "PAGE_SIZE", 5)
    login("IpsUser")
    s = history.SORTS[sort]
    rows = Execution.objects.all()
    if s.needs_value:
        rows = rows.filter(**{f"{s.field}__isnull": False})
    expected = list(rows.order_by(*s.ordering).values_list("pk", flat=True))
    params = {} if sort == history.DEFAULT_SORT.key else {"sort": sort}
    forward = _walk(client, URL + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""))
    assert [pk for p in forward for pk in p] == expected
    assert all(len(p) == 5 for p in forward[:-1])
    # From the last page back to the first, by "previous" links.
    last = URL + "?" + "&".join([*(f"{k}={v}" for k, v in params.items()), "page=last"])
    backward = _walk(client, last, "prev")
    assert [pk for p in reversed(backward) for pk in p] == expected
    assert backward[0] == expected[-len(backward[0]):]


def test_sorting_by_runtime_leaves_out_runs_without_one_and_says_how_it_sorts(client, login, many):
    login("IpsUser")
    response = client.get(URL, {"sort": "-ips_runtime"})
    ids = shown(response)
    runtimes = [Execution.objects.get(pk=pk).ips_runtime_ms for pk in ids]
    assert None not in runtimes and runtimes == sorted(runtimes, reverse=True)
    assert "longest IPS runtime first" in response.content.decode()
    # The column header reverses it.
    assert "sort=ips_runtime" in response.content.decode()


def test_a_mangled_page_link_shows_the_first_page(client, login, many):
    login("IpsUser")
    first = shown(client.get(URL))
    for cursor in ("nonsense", "12_x", "99999999999999999999999_1"):
        assert shown(client.get(URL, {"after": cursor})) == first


def test_the_count_stops_at_its_cap(client, login, many, monkeypatch):
    login("IpsUser")
    assert "23 executions" in client.get(URL).content.decode()
    monkeypatch.setattr(history, "COUNT_CAP", 10)
    body = client.get(URL).content.decode()
    assert "More than 10 executions" in body and "23 executions" not in body


# --- The address is the state: htmx, Back and Forward ---------------------------------------------


def test_htmx_swaps_filters_and_rows_together_and_pushes_the_address_shown(client, login, many, monkeypatch):
    monkeypatch.setattr(history, "PAGE_SIZE", 5)
    login("IpsUser")
    response = client.get(URL, {"outcome": "accepted", "company": "", "user": "", "sort": "-requested"}, **HTMX)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="history-body">')
    assert '<option value="accepted" selected>' in body
    # Empty filters and the default order left out: the address says only what filters.
    assert response["HX-Push-Url"] == URL + "?outcome=accepted"
    older = re.search(r'<a href="([^"]+)"[^>]*rel="next"', body)[1].replace("&amp;", "&")
    response = client.get(older, **HTMX)
    pushed = parse_qs(urlsplit(response["HX-Push-Url"]).query)
    assert pushed["outcome"] == ["accepted"] and "after" in pushed


def test_back_after_an_htmx_change_gets_the_whole_page(client, login, many):
    """htmx asks for the page again on Back (no snapshot kept): the whole page, never the partial."""
    login("IpsUser")
    response = client.get(URL, {"outcome": "accepted"}, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    body = response.content.decode()
    assert "<html" in body and 'hx-history="false"' in body
    assert '<option value="accepted" selected>' in body


def test_the_page_keeps_no_snapshot_and_links_each_row(client, login, rows):
    login("IpsUser")
    body = client.get(URL).content.decode()
    assert 'hx-history="false"' in body
    row = re.search(rf'<tr id="execution-{rows["recent"].pk}".*?</tr>', body, re.S)[0]
    # The first link of a row is its run's details (test_workers reads it so); then the job's page.
    links = re.findall(r'<a href="([^"]+)"', row)
    assert links[:2] == [reverse("jobs:run_detail", args=[rows["recent"].pk]), reverse("jobs:job_detail", args=[rows["recent"].job_id])]
    # Companies by name, times with their date.
    assert "Demo Company" in row and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row)


def test_job_name_suggestions_come_from_the_users_companies(client, login, synced):
    login("IpsUser")
    body = client.get(reverse("jobs:history_job_names"), {"job_name": "publish"}, **HTMX).content.decode()
    assert '<option value="Nightly | Publish">' in body
    login("othercompany")
    body = client.get(reverse("jobs:history_job_names"), {"job_name": "test"}, **HTMX).content.decode()
    assert "My Test Job" not in body
    login("WebServiceUser")
    assert "<option" not in client.get(reverse("jobs:history_job_names"), {"job_name": "test"}, **HTMX).content.decode()


# --- Queries: the same at any size ------------------------------------------------------------------

PAGES = [
    {},
    {"page": "last"},
    {"outcome": "accepted"},
    {"ips_result": "ok"},
    {"user": "ipsuser"},
    {"who": "mine"},
    {"job_name": "test"},
    {"range": "7d"},
    {"from": "2020-01-01", "to": "2030-01-01"},
    {"sort": "-ips_runtime"},
    {"sort": "request_time"},
]


def _queries(client, params) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(URL, params).status_code == 200
    return len(queries)


@pytest.mark.parametrize("params", PAGES, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "first")
def test_a_pages_queries_do_not_grow_with_the_rows(params, client, login, users, job, django_assert_max_num_queries):
    login("IpsUser")
    make_execution(job, users["IpsUser"], requested_at=timezone.now() - dt.timedelta(days=1))
    few = _queries(client, params)
    for i in range(2 * history.PAGE_SIZE + 7):
        ex = make_execution(job, users["IpsUser"], requested_at=timezone.now() - dt.timedelta(minutes=i + 1))
        ips_result(ex, "ok", 1000 + i)
    # Session, user, profile, memberships, companies, user names; rows, the other side, the count;
    # the job name or user looked up in their tables.
    with django_assert_max_num_queries(few):
        client.get(URL, params)
    with django_assert_max_num_queries(11):
        client.get(URL, params)
    # A deep page: one query more (whether rows lie behind it), whatever the depth.
    middle = re.search(r'<a href="([^"]+)"[^>]*rel="next"', client.get(URL, params).content.decode())
    if middle:
        with django_assert_max_num_queries(few + 1):
            client.get(middle[1].replace("&amp;", "&"))


def test_a_filter_on_several_jobs_or_users_pages_through_every_row_in_order(client, login, users, synced, monkeypatch):
    """Several matches are read from each one's index (history.in_order) and merged: same rows, same order."""
    monkeypatch.setattr(history, "PAGE_SIZE", 4)
    jobs = list(Job.objects.filter(company=synced, name__icontains="publish"))
    assert len(jobs) == 2
    base = timezone.now() - dt.timedelta(days=1)
    for i in range(11):
        who = users["IpsUser"] if i % 2 else users["IpsAdmin"]
        make_execution(jobs[i % 2], who, "denied", requested_at=base + dt.timedelta(minutes=i // 3))
    login("IpsUser")
    for params, rows in (
        ("job_name=publish", Execution.objects.filter(job__in=jobs)),
        ("user=ipsa", Execution.objects.filter(username="ipsadmin")),
        ("user=ips&outcome=denied", Execution.objects.filter(username__in=["ipsadmin", "ipsuser"])),
    ):
        expected = list(rows.order_by("-requested_at", "-id").values_list("pk", flat=True))
        forward = _walk(client, f"{URL}?{params}")
        assert [pk for p in forward for pk in p] == expected, params
        backward = _walk(client, f"{URL}?{params}&page=last", "prev")
        assert [pk for p in reversed(backward) for pk in p] == expected, params


def test_in_order_merges_the_values_indexes(users, synced):
    jobs = list(Job.objects.filter(company=synced)[:3])
    for i in range(9):
        make_execution(jobs[i % 3], users["IpsUser"], "denied", requested_at=timezone.now() - dt.timedelta(seconds=i % 4))
    split = history.Split("job_id", tuple(j.pk for j in jobs))
    rows = history.in_order(Execution.objects.all(), ["-requested_at", "-id"], 5, split)
    assert list(rows.values_list("pk", flat=True)) == list(
        Execution.objects.order_by("-requested_at", "-id").values_list("pk", flat=True)[:5]
    )


def test_a_change_that_shows_the_same_adds_no_history_entry(client, login, rows):
    """Enter in a field sends a change, then a submit: the second must not add an entry for Back."""
    login("IpsUser")
    response = client.get(URL, {"outcome": "refused", "user": ""}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="results",
                          HTTP_HX_CURRENT_URL="http://testserver/history/?outcome=refused")
    assert response["HX-Push-Url"] == "false"
    body = response.content.decode()
    # The rows, and the notes out of band; never the form the user is in.
    assert body.lstrip().startswith('<div id="results">') and 'id="history-filters"' not in body
    assert '<div id="filter-notes" hx-swap-oob="true">' in body


def test_dates_count_only_for_a_custom_range(client, login, rows):
    login("admin")
    # The page's form sends range= with the dates it hides: any time.
    assert len(shown(client.get(URL, {"range": "", "from": "2000-01-01", "to": "2000-01-02"}))) == 6
    assert shown(client.get(URL, {"range": "custom", "from": "2000-01-01", "to": "2000-01-02"})) == []


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_job_name_suggestions_role_table(actor, client, login, synced):
    login(actor)
    response = client.get(reverse("jobs:history_job_names"), {"job_name": "test"}, **HTMX)
    if actor == ANONYMOUS:
        assert response.status_code == 200 and response["HX-Redirect"].startswith(reverse("login"))
        return
    sees_47, _, _ = HISTORY_TABLE[actor]
    # A job of 47's: offered to whoever reads 47's history, to nobody else.
    assert ('<option value="My Test Job">' in response.content.decode()) is sees_47


# Dates at the ends of the calendar: a clear error, never a 500 (OverflowError).
EDGE_DATES = [
    ({"to": "9999-12-31"}, "UTC"),
    ({"to": "9999-12-31T23:59"}, "America/Los_Angeles"),
    ({"from": "0001-01-01"}, "Pacific/Kiritimati"),
    ({"from": "0001-01-01T00:00", "to": "9999-12-31"}, "UTC"),
]


@pytest.mark.parametrize("params, zone", EDGE_DATES, ids=lambda v: v if isinstance(v, str) else "&".join(v))
def test_dates_at_the_ends_of_the_calendar_are_refused_clearly(params, zone, client, login, rows):
    login("admin")
    client.cookies["tz"] = zone
    response = client.get(URL, params)
    assert response.status_code == 200
    assert "Choose a date from 1900-01-01 to 9999-12-30." in response.content.decode()
    assert not shown(response)


def test_the_last_allowed_dates_still_filter(client, login, rows):
    login("admin")
    client.cookies["tz"] = "Pacific/Kiritimati"
    response = client.get(URL, {"from": "1900-01-01", "to": "9999-12-30"})
    assert response.status_code == 200
    assert len(shown(response)) == 6


def _jobs_imports(module: str) -> set[str]:
    """The modules of jobs that jobs/<module>.py imports."""
    tree = ast.parse((Path(history.__file__).parent / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jobs"):
            names |= {(node.module + ".").split(".")[1] or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("jobs.")}
    return names


def test_reading_history_imports_nothing_of_the_web_layer():
    """History and its export are read by views, never the other way: the bidi
    helper they share with the middleware lives in text.py, which imports nothing of jobs."""
    web = {"middleware", "views", "templatetags", "context_processors", "urls", "admin"}
    assert _jobs_imports("history") & web == set()
    assert _jobs_imports("csvexport") & web == set()
    assert _jobs_imports("csvexport") >= {"history", "text"}
    assert _jobs_imports("text") == set()
