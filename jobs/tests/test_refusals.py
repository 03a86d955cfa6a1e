"""A refusal says only why: who may not list a job learns nothing else about it.

Not its name, handle, description, schedule or who ran it last, whatever the action
(run, stop, sync, status, run details, history) and whatever the IPS user type.
"""

import pytest
from django.urls import reverse
from django.utils.html import escape

from jobs import roles

from .conftest import ALL_ACTORS, ANONYMOUS, HTMX, SUPERUSER, make_execution


# Action -> (method, url maker, the IPS operation whose user types may read the job's data there).
ACTIONS = {
    "run": ("post", lambda job, ex: reverse("jobs:run", args=[job.pk]), "getScheduledJobs"),
    "stop": ("post", lambda job, ex: reverse("jobs:stop", args=[job.pk]), "getScheduledJobs"),
    "sync": ("post", lambda job, ex: reverse("jobs:sync", args=[job.company.pk]), "getScheduledJobs"),
    "status": ("get", lambda job, ex: reverse("jobs:status", args=[job.pk]), "getScheduledJobs"),
    "details": ("get", lambda job, ex: reverse("jobs:run_detail", args=[ex.pk]), "getJobLogs"),
    "history": ("get", lambda job, ex: reverse("jobs:history"), "getJobLogs"),
}


def _may_read(actor, operation) -> bool:
    if actor == SUPERUSER:
        return True
    return actor in roles.UserType.values and roles.is_authorized(actor, operation)


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("actor", [a for a in ALL_ACTORS if a != ANONYMOUS])
def test_a_refusal_says_only_why(actor, action, client, login, users, job):
    job.description = "Secret nightly description"
    job.exec_schedule = "0 13 37 * * ?"
    job.save()
    last = make_execution(job, users["TrialSiteUser"], "accepted")  # "trialsiteuser" ran it last
    method, url, reading = ACTIONS[action]
    login(actor)
    response = getattr(client, method)(url(job, last), **HTMX)
    body = response.content.decode()
    if _may_read(actor, reading):
        assert response.status_code < 500
        return
    for secret in (job.name, job.description, job.exec_schedule, "trialsiteuser", job.handle):
        assert escape(secret) not in body and secret not in body, (actor, action, secret)
