"""The jobs page and the history page: who sees what."""

import pytest
from django.urls import reverse

from jobs.models import Company, Execution, Job

from .conftest import ALL_ACTORS, HTMX, press_run

# actor -> (sees company 47's jobs, may run them, sees company 48's jobs).
# From ips-api.md: listing needs getScheduledJobs, running needs executeJob.
LIST_TABLE = {
    "IpsAdmin": (True, True, False),
    "IpsCompanyAdmin": (True, False, False),
    "IpsUser": (True, True, False),
    "WebServiceUser": (False, False, False),
    "TrialSiteAdmin": (True, True, False),
    "TrialSiteUser": (True, True, False),
    "ImagePortalAdmin": (True, True, False),
    "ImagePortalUser": (False, False, False),
    "ImagePortalContrib": (True, True, False),
    "ImagePortalContribUser": (True, True, False),
    "nomember": (False, False, False),
    "othercompany": (False, False, True),
    "admin": (True, True, True),
}


def test_the_list_table_covers_every_actor():
    assert sorted([*LIST_TABLE, "anonymous"]) == sorted(ALL_ACTORS)


@pytest.mark.parametrize("actor", sorted(LIST_TABLE))
def test_job_list_role_table(actor, client, login, synced):
    login(actor)
    # Both companies opened (a user of several sees one company's jobs first, the others summarized).
    response = client.get(reverse("jobs:list"), {"open": [synced.pk, Company.objects.get(handle="48").pk]})
    assert response.status_code == 200
    body = response.content.decode()
    sees_47, runs_47, sees_48 = LIST_TABLE[actor]
    job47 = Job.objects.get(handle="47|My Test Job|")
    job48 = Job.objects.filter(company__handle="48").first()
    assert (f'id="job-{job47.pk}"' in body) is sees_47
    assert ("My Test Job" in body) is sees_47
    assert (f'id="job-{job48.pk}"' in body) is sees_48
    assert (reverse("jobs:run", args=[job47.pk]) in body) is runs_47
    if sees_47 and not runs_47:
        assert f"Your role {actor} in company 47 cannot run jobs (executeJob)." in body
        assert 'class="run" aria-disabled="true" title="Your role IpsCompanyAdmin in company 47 cannot run jobs' in body
    if actor in ("WebServiceUser", "ImagePortalUser"):
        assert f"Your role {actor} in company 47 cannot list jobs (getScheduledJobs)." in body
    if actor == "nomember":
        assert "not a member of any company" in body
        assert "Demo Company" not in body


def test_anonymous_is_sent_to_login(client, synced):
    response = client.get(reverse("jobs:list"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_list_shows_the_last_execution(client, login, users, job):
    login("IpsUser")
    client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    body = client.get(reverse("jobs:list")).content.decode()
    row = body[body.index(f'id="job-{job.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "accepted" in row and "ipsuser ·" in row


def test_job_names_from_ips_are_escaped(client, login, synced):
    login("IpsUser")
    body = client.get(reverse("jobs:list")).content.decode()
    assert "&lt;b&gt;Bold&lt;/b&gt; Upload" in body
    assert "<b>Bold</b>" not in body
    assert "Nightly | Publish" in body and "Übersicht Publish" in body


def test_the_list_takes_a_fixed_number_of_queries(client, login, synced, django_assert_max_num_queries):
    login("IpsUser")
    for job in Job.objects.filter(company=synced):
        client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    # Session, user (with the profile), memberships, companies, job counts, the page of
    # jobs with their last run's key, those runs, their open missed runs, the 24 h summary,
    # the companies' counts of jobs with a missed run.
    with django_assert_max_num_queries(10):
        client.get(reverse("jobs:list"))


def test_pages_carry_a_strict_content_security_policy(client, login, synced):
    login("IpsUser")
    response = client.get(reverse("jobs:list"))
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    body = response.content.decode()
    assert "<script>" not in body and " on" + "click=" not in body  # no inline script anywhere
    assert response["X-Frame-Options"] == "DENY"


# --- History ------------------------------------------------------------------

# actor -> (sees company 47's execution, sees company 48's). From ips-api.md:
# history needs getJobLogs, which every type but WebServiceUser has.
HISTORY_TABLE = {
    "IpsAdmin": (True, False),
    "IpsCompanyAdmin": (True, False),
    "IpsUser": (True, False),
    "WebServiceUser": (False, False),
    "TrialSiteAdmin": (True, False),
    "TrialSiteUser": (True, False),
    "ImagePortalAdmin": (True, False),
    "ImagePortalUser": (True, False),
    "ImagePortalContrib": (True, False),
    "ImagePortalContribUser": (True, False),
    "nomember": (False, False),
    "othercompany": (False, True),
    "admin": (True, True),
}


@pytest.fixture
def two_runs(users, synced):
    job47 = Job.objects.get(handle="47|My Test Job|")
    job48 = Job.objects.filter(company__handle="48").first()
    a = press_run(job47, users["IpsUser"], "r47")
    b = press_run(job48, users["othercompany"], "r48")
    assert a.outcome == b.outcome == "accepted"
    return a, b


@pytest.mark.parametrize("actor", sorted(HISTORY_TABLE))
def test_history_role_table(actor, client, login, two_runs):
    login(actor)
    response = client.get(reverse("jobs:history"))
    assert response.status_code == 200
    body = response.content.decode()
    sees_47, sees_48 = HISTORY_TABLE[actor]
    assert (f'id="execution-{two_runs[0].pk}"' in body) is sees_47
    assert (f'id="execution-{two_runs[1].pk}"' in body) is sees_48


def test_history_requires_login(client, two_runs):
    response = client.get(reverse("jobs:history"))
    assert response.status_code == 302


def test_history_filters(client, login, users, two_runs, synced):
    login("admin")
    job47 = two_runs[0].job
    denied = press_run(job47, users["IpsCompanyAdmin"], "r3")
    url = reverse("jobs:history")

    def shown(**params):
        body = client.get(url, params).content.decode()
        return {e.pk for e in Execution.objects.all() if f'id="execution-{e.pk}"' in body}

    assert shown() == {two_runs[0].pk, two_runs[1].pk, denied.pk}
    assert shown(company=synced.pk) == {two_runs[0].pk, denied.pk}
    assert shown(job=job47.pk) == {two_runs[0].pk, denied.pk}
    assert shown(user="ipscompanyadmin") == {denied.pk}
    assert shown(outcome="denied") == {denied.pk}
    assert shown(outcome="accepted", company=synced.pk) == {two_runs[0].pk}


def test_history_filters_cannot_reach_a_foreign_company(client, login, two_runs):
    login("othercompany")
    job47 = two_runs[0].job
    body = client.get(reverse("jobs:history"), {"company": job47.company.pk, "job": job47.pk}).content.decode()
    assert f'id="execution-{two_runs[0].pk}"' not in body
    assert "My Test Job" not in body


def test_history_htmx_answers_only_the_results(client, login, two_runs):
    login("IpsUser")
    response = client.get(reverse("jobs:history"), {"outcome": "accepted"}, **HTMX)
    body = response.content.decode()
    # The filters and the rows together, so that they always say the same.
    assert body.lstrip().startswith('<div id="history-body">')
    assert 'id="history-filters"' in body and 'id="results"' in body
    assert "<html" not in body
    assert f'id="execution-{two_runs[0].pk}"' in body
    assert response["HX-Push-Url"] == reverse("jobs:history") + "?outcome=accepted"


def test_history_shows_newest_first_with_fault_and_times(client, login, users, job, ips_emulator):
    login("IpsUser")
    ips_emulator.state.inject("soap_fault", operation="executeJob", fault="ipsApiFault", code=30000, reason="Disk full")
    client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    client.post(reverse("jobs:run", args=[job.pk]), **HTMX)
    body = client.get(reverse("jobs:history")).content.decode()
    first, second = Execution.objects.order_by("id")
    assert body.index(f"execution-{second.pk}") < body.index(f"execution-{first.pk}")
    assert "30000 EXCEPTION" in body and "Disk full" in body and "refused by IPS" in body
    assert " ms</td>" in body
