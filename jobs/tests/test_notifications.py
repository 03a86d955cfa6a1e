"""Notifications (issue 19): a subscriber hears of a run once, by email (locmem) and by a signed webhook to a
receiver this test starts (a small http.server in a thread, checking the Standard Webhooks signature).

Runs are real: pressed here or fired by the emulator's schedule, recorded by the watcher (``look``), over real
HTTP, on the emulator's manual clock. The tasks the events enqueue run in this process (``run_tasks``: the
db_worker's own loop, in batch); retries are driven by the dashboard's clock (``dashboard_clock``), never slept
for. Two real ``manage.py db_worker`` processes: see the test at the end (PostgreSQL only)."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import zoneinfo
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection as db_connection
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import wait_for
from jobs import crypto, events, roles, tasks
from jobs.models import DeliveryAttempt, Execution, Membership, Notification, Profile, Subscription
from jobs.services import channels as notify_channels
from jobs.services import notify

from .conftest import ALL_ACTORS, ANONYMOUS, NO_MEMBERSHIP, OTHER_COMPANY_ONLY, RUN_SECONDS, SUPERUSER, look, press_run
from .test_missed_runs import GRACE, advance_to, hold, scheduling, synced_job  # noqa: F401  (fixture)
from .test_workers import log_messages, procs  # noqa: F401  (fixture)

State = Notification.State
R = Execution.IpsResult


# --- helpers ----------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver: answers ``fail_first`` posts with 500 (or ``status``), then 204; keeps every post,
    and the ones whose Standard Webhooks signature checks out with ``secret``."""

    def __init__(self):
        self.posts: list[tuple[dict, bytes]] = []
        self.verified: list[dict] = []
        self.fail_first = 0
        self.secret = ""
        self.status = 500
        self.location = ""
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.posts.append((headers, body))
                    failing = len(receiver.posts) <= receiver.fail_first
                    if not failing and receiver.secret:
                        try:
                            receiver.verified.append(Webhook(receiver.secret).verify(body, headers))
                        except WebhookVerificationError:
                            pass
                self.send_response(receiver.status if failing else 204)
                if failing and receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.NOTIFY_ALLOW_PRIVATE_TARGETS = True  # the receiver is on this machine
    made = Receiver()
    yield made
    made.close()


@pytest.fixture(autouse=True)
def _mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://ipsadmin.example.com"


def run_tasks() -> int:
    """Run every task that is due (the db_worker's loop, in batch, in this process); how many ran."""
    before = DBTaskResult.objects.exclude(status="READY").count()
    Worker(queue_names=["default"], interval=0, batch=True, backend_name="default", startup_delay=False,
           max_tasks=None, worker_id="test-worker", excluded_queue_names=[]).run()
    failed = list(DBTaskResult.objects.filter(status="FAILED").values_list("exception_class_path", "traceback"))
    assert not failed, failed
    return DBTaskResult.objects.exclude(status="READY").count() - before


def subscribe(user, receiver=None, *, company=None, job=None, scope="company", channel="email", **results):
    """A subscription as the settings page makes it (services.notify.add_subscription)."""
    results = results or {"on_errors": True}
    sub, secret = notify.add_subscription(
        user, scope=scope, company=company if scope == "company" else None, job=job, channel=channel,
        url=receiver.url if receiver else "", results={f: results.get(f, False) for f in Subscription.RESULTS},
    )
    if receiver is not None and secret:
        receiver.secret = secret
    return sub


def with_email(user):
    user.email = f"{user.username}@example.com"
    user.save(update_fields=["email"])
    return user


def finish_run(job, clock, *, pressed_by=None, ips_emulator=None):
    """One run of the job, pressed here (``pressed_by``) or fired by the emulator's schedule, followed by the
    watcher to its result; the row."""
    if pressed_by is not None:
        execution = press_run(job, pressed_by)
        look(job.company)
    else:
        ips_emulator.state.fire_schedule(job.handle)
        look(job.company)
        execution = Execution.objects.filter(job=job, started_by=Execution.StartedBy.SCHEDULE).latest("pk")
    clock.advance(RUN_SECONDS + 1)
    look(job.company)
    execution.refresh_from_db()
    assert execution.ips_result, "the watcher recorded the run's result"
    return execution


@pytest.fixture
def errors_job(job, ips_emulator):
    """The test job, whose runs end with errors in the emulator."""
    ips_emulator.state.jobs[job.handle].outcome = "errors"
    return job


# --- the Done-when of issue 19 ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("started", ["pressed here", "IPS schedule"])
def test_a_subscriber_to_errors_in_47_gets_one_email_and_one_signed_delivery(
    started, errors_job, users, clock, ips_emulator, receiver
):
    subscriber = with_email(users["IpsUser"])
    subscribe(subscriber, company=errors_job.company)
    subscribe(subscriber, receiver, company=errors_job.company, channel="webhook")

    execution = finish_run(errors_job, clock, pressed_by=subscriber if started == "pressed here" else None,
                           ips_emulator=ips_emulator)
    assert execution.ips_result == R.ERRORS
    run_tasks()
    look(errors_job.company)  # looked at again: the run is recorded, nothing is told twice
    run_tasks()

    [email] = mail.outbox
    assert email.to == ["ipsuser@example.com"]
    assert "My Test Job" in email.subject and "error" in email.subject
    # The same Message-ID on every try of it: a mail reader shows a message sent twice once.
    assert email.extra_headers["Message-ID"] == f"<ipsadmin.msg_{Notification.objects.get(subscription__channel='email').pk}@ipsadmin.example.com>"
    assert f"https://ipsadmin.example.com/runs/{execution.pk}/" in email.body
    assert started in email.body or (started == "pressed here" and "ipsuser" in email.body)
    [delivery] = receiver.verified
    assert len(receiver.posts) == 1
    run = delivery["data"]["run"]
    assert delivery["type"] == "run.ended"
    assert (run["id"], run["result"], run["ips_run_handle"]) == (execution.pk, "errors", execution.ips_run_handle)
    assert run["counts"]["errors"] == execution.ips_error_count > 0
    assert run["started_by"] == ("ipsuser" if started == "pressed here" else "IPS schedule")
    assert run["runtime_ms"] == execution.ips_runtime_ms
    assert delivery["data"]["company"]["handle"] == "47" and delivery["data"]["job"]["name"] == "My Test Job"
    assert delivery["data"]["link"] == f"https://ipsadmin.example.com/runs/{execution.pk}/"
    assert set(Notification.objects.values_list("state", flat=True)) == {State.SENT}


@pytest.mark.django_db(transaction=True)
def test_a_clean_run_sends_nothing_to_a_subscriber_to_errors(job, users, clock, ips_emulator, receiver):
    subscriber = with_email(users["IpsUser"])
    subscribe(subscriber, company=job.company)
    subscribe(subscriber, receiver, company=job.company, channel="webhook")
    ips_emulator.state.jobs[job.handle].outcome = "success"
    assert finish_run(job, clock, pressed_by=subscriber).ips_result == R.OK
    run_tasks()
    assert mail.outbox == [] and receiver.posts == []
    assert not Notification.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_fails_twice_gets_it_on_the_third_try(
    errors_job, users, clock, ips_emulator, receiver, dashboard_clock, settings
):
    settings.NOTIFY_RETRY_DELAYS = [30.0, 300.0]
    subscriber = users["IpsUser"]
    subscribe(subscriber, receiver, company=errors_job.company, channel="webhook")
    receiver.fail_first = 2
    finish_run(errors_job, clock, pressed_by=subscriber)

    run_tasks()
    notification = Notification.objects.get()
    assert (notification.state, notification.attempts, len(receiver.posts)) == (State.RETRY, 1, 1)
    run_tasks()  # not due yet: nobody tries
    assert len(receiver.posts) == 1
    dashboard_clock.advance(30)
    run_tasks()
    notification.refresh_from_db()
    assert (notification.state, notification.attempts, len(receiver.posts)) == (State.RETRY, 2, 2)
    dashboard_clock.advance(299)
    run_tasks()
    assert len(receiver.posts) == 2  # the backoff grows: 300 s before the third
    dashboard_clock.advance(1)
    run_tasks()
    notification.refresh_from_db()
    assert (notification.state, notification.attempts) == (State.SENT, 3)
    assert len(receiver.verified) == 1 and len(receiver.posts) == 3
    # One message: the same webhook-id on every try, so the receiver can drop a duplicate.
    assert len({headers["webhook-id"] for headers, _body in receiver.posts}) == 1
    attempts = list(DeliveryAttempt.objects.order_by("at", "pk").values_list("ok", "status_code"))
    assert attempts == [(False, 500), (False, 500), (True, 204)]


@pytest.mark.django_db(transaction=True)
def test_a_subscriber_who_lost_the_role_gets_nothing(errors_job, users, clock, receiver):
    subscriber = with_email(users["IpsUser"])
    subscribe(subscriber, company=errors_job.company)
    subscribe(subscriber, receiver, company=errors_job.company, channel="webhook")
    Membership.objects.filter(user=subscriber, company=errors_job.company).update(role="WebServiceUser")
    finish_run(errors_job, clock, pressed_by=users["IpsAdmin"])
    run_tasks()
    assert mail.outbox == [] and receiver.posts == []
    # The subscriptions stay, and the settings page says they send nothing.
    assert Subscription.objects.filter(user=subscriber).count() == 2
    assert not any(notify.subscription_works(s) for s in Subscription.objects.filter(user=subscriber))


@pytest.mark.django_db(transaction=True)
def test_a_role_lost_after_the_event_is_checked_again_at_send_time(errors_job, users, clock):
    subscriber = with_email(users["IpsUser"])
    subscribe(subscriber, company=errors_job.company)
    execution = finish_run(errors_job, clock, pressed_by=subscriber)
    notify.fan_out(Notification.Kind.RUN_ENDED, execution.pk)  # as a worker would, before the role goes
    assert Notification.objects.get().state == State.PENDING
    Membership.objects.filter(user=subscriber).delete()
    run_tasks()  # the queued fan-out adds nothing; the delivery checks the role again
    notification = Notification.objects.get()
    assert notification.state == State.SKIPPED and "may no longer read" in notification.last_error
    assert mail.outbox == []


# --- who may hear: the roles table (getJobLogs), every IPS user type --------------------------


def _expected_to_hear(actor: str) -> bool:
    if actor == SUPERUSER:
        return True  # acts as IpsAdmin everywhere
    if actor in (NO_MEMBERSHIP, OTHER_COMPANY_ONLY):
        return False
    return actor in roles.AUTHORIZED["getJobLogs"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("actor", [a for a in ALL_ACTORS if a != ANONYMOUS])
def test_who_hears_of_a_run_in_47_follows_get_job_logs(actor, errors_job, users, clock):
    subscriber = with_email(users[actor])
    # Made directly (the settings page would not offer company 47 to a role that may not read it).
    Subscription.objects.create(user=subscriber, scope="company", company=errors_job.company, on_errors=True)
    finish_run(errors_job, clock, pressed_by=users["IpsAdmin"])
    run_tasks()
    assert [m.to for m in mail.outbox] == ([[subscriber.email]] if _expected_to_hear(actor) else [])


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_the_settings_page_offers_and_accepts_company_47_by_get_job_logs(actor, client, login, company):
    user = login(actor)
    url = reverse("jobs:preferences")
    response = client.get(url)
    if actor == ANONYMOUS:
        assert response.status_code == 302 and reverse("login") in response["Location"]
        return
    assert response.status_code == 200
    offered = f'value="company:{company.pk}"' in response.content.decode()
    allowed = _expected_to_hear(actor)
    assert offered is allowed
    response = client.post(url, {"do": "add", "sub-scope": f"company:{company.pk}", "sub-results": ["on_errors"],
                                 "sub-channel": "email"})
    made = Subscription.objects.filter(user=user, company=company).exists()
    assert made is allowed
    assert response.status_code == (302 if allowed else 200)


# --- the settings page -------------------------------------------------------------------------


def test_a_webhook_secret_is_shown_once_and_the_address_never(client, users, company):
    client.force_login(users["IpsUser"])
    url = reverse("jobs:preferences")
    address = "https://hooks.example.net/ips/very-secret-token"
    response = client.post(url, {"do": "add", "sub-scope": f"company:{company.pk}",
                                 "sub-results": ["on_errors", "on_fatal"], "sub-channel": "webhook",
                                 "sub-url": address})
    # Redirected (a reload adds nothing), then shown once, by a page no cache keeps.
    assert response.status_code == 302 and response["Location"] == url
    assert "whsec_" not in response.content.decode() and "whsec_" not in str(response.cookies)
    sub = Subscription.objects.get()
    secret = sub.secret()
    shown = client.get(url)
    assert secret.startswith("whsec_") and secret in shown.content.decode()
    assert "no-store" in shown["Cache-Control"]
    assert address not in shown.content.decode()
    assert address not in sub.target_encrypted and secret not in sub.secret_encrypted
    assert crypto.decrypt(sub.target_encrypted) == address
    page = client.get(url).content.decode()
    assert secret not in page and address not in page
    assert "https://hooks.example.net" in page  # what is shown of it: the host


def test_a_non_http_address_is_refused(client, users, company):
    client.force_login(users["IpsUser"])
    for address in ("file:///etc/passwd", "gopher://example.com/", "ftp://example.com/x"):
        response = client.post(reverse("jobs:preferences"), {
            "do": "add", "sub-scope": f"company:{company.pk}", "sub-results": ["on_errors"],
            "sub-channel": "webhook", "sub-url": address})
        assert response.status_code == 200
    assert not Subscription.objects.exists()


def test_a_user_pauses_resumes_and_removes_only_their_own(client, users, company):
    mine = subscribe(users["IpsUser"], company=company)
    theirs = subscribe(users["IpsAdmin"], company=company)
    client.force_login(users["IpsUser"])
    url = reverse("jobs:preferences")
    assert client.post(url, {"do": "pause", "subscription": mine.pk}).status_code == 302
    mine.refresh_from_db()
    assert mine.paused
    assert "Paused" in client.get(url).content.decode()
    assert client.post(url, {"do": "resume", "subscription": mine.pk}).status_code == 302
    mine.refresh_from_db()
    assert not mine.paused
    assert client.post(url, {"do": "pause", "subscription": theirs.pk}).status_code == 404
    assert client.post(url, {"do": "remove", "subscription": theirs.pk}).status_code == 404
    assert client.post(url, {"do": "remove", "subscription": "x"}).status_code == 404
    assert client.post(url, {"do": "remove", "subscription": mine.pk}).status_code == 302
    assert list(Subscription.objects.all()) == [theirs]
    theirs.refresh_from_db()
    assert not theirs.paused


def test_the_page_says_a_subscription_whose_role_went_sends_nothing(client, users, company):
    subscribe(users["IpsUser"], company=company)
    Membership.objects.filter(user=users["IpsUser"]).update(role="WebServiceUser")
    client.force_login(users["IpsUser"])
    assert "Sends nothing" in client.get(reverse("jobs:preferences")).content.decode()


# --- channels, outcomes, events ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_press_that_did_not_go_through_is_told_once_and_an_accepted_one_costs_no_query(
    job, users, clock, ips_emulator, django_assert_num_queries
):
    subscriber = with_email(users["IpsUser"])
    subscribe(subscriber, scope="mine", on_not_through=True)
    ips_emulator.state.inject("soap_fault", operation="executeJob", code=30000, reason="Disk full", times=1)
    refused = press_run(job, subscriber)
    assert refused.outcome == Execution.Outcome.REFUSED
    run_tasks()
    [email] = mail.outbox
    assert "My Test Job" in email.subject and f"/runs/{refused.pk}/" in email.body
    with django_assert_num_queries(0):
        tasks._on_press_ended(None, execution_id=refused.pk, outcome=Execution.Outcome.ACCEPTED,
                              operation="executeJob")
        # A Stop or a Pause that did not go through is no run that did not: nothing told, nothing read.
        tasks._on_press_ended(None, execution_id=refused.pk, outcome=Execution.Outcome.UNREACHABLE,
                              operation="pauseJob")


@pytest.mark.django_db(transaction=True)
def test_a_missed_run_is_told_to_subscribers_of_missed_runs(job, users, ips_emulator):
    from django.apps import apps

    MissedRun = apps.get_model("jobs", "MissedRun")
    subscriber = with_email(users["IpsUser"])
    subscribe(subscriber, company=job.company, on_missed=True)
    subscribe(with_email(users["IpsAdmin"]), company=job.company, on_errors=True)  # not missed runs
    fire = timezone.now().replace(microsecond=0)
    with transaction.atomic():
        missed = MissedRun.objects.create(job=job, company=job.company, fire_time=fire, last_fire_time=fire,
                                          detected_at=fire)
        events.announce_run_missed(missed.pk)
    run_tasks()
    with transaction.atomic():
        events.announce_run_missed(missed.pk)  # told again: still one message
    run_tasks()
    [email] = mail.outbox
    assert email.to == [subscriber.email]
    assert "missed" in email.subject and f"/jobs/{job.pk}/" in email.body


@pytest.mark.django_db(transaction=True)
def test_a_held_back_job_is_emailed_as_missed_once_its_grace_passes_on_ips_clock(company, users, scheduling):  # noqa: F811
    emu = scheduling
    subscriber = with_email(users["IpsUser"])
    subscribe(subscriber, company=company, on_missed=True)
    job = synced_job(company)
    fire = job.next_fire_time
    hold(emu, job)
    advance_to(emu, fire, GRACE - dt.timedelta(seconds=1))
    look(company)
    run_tasks()
    assert mail.outbox == []
    advance_to(emu, fire, GRACE + dt.timedelta(seconds=1))
    look(company)
    run_tasks()
    look(company)
    run_tasks()
    [email] = mail.outbox
    assert email.to == [subscriber.email] and job.name in email.subject and "missed" in email.subject
    assert f"/jobs/{job.pk}/" in email.body
    # The run that comes clears it, and tells nothing more.
    hold(emu, job, held=False)
    advance_to(emu, emu.state.jobs[job.handle].next_fire_time, dt.timedelta(seconds=1))
    look(company)
    run_tasks()
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_email_is_written_in_the_subscribers_time_zone(errors_job, users, clock):
    subscriber = with_email(users["IpsUser"])
    Profile.objects.create(user=subscriber, time_zone="Asia/Tokyo")
    subscribe(subscriber, company=errors_job.company)
    execution = finish_run(errors_job, clock, pressed_by=subscriber)
    run_tasks()
    [email] = mail.outbox
    local = timezone.localtime(execution.ips_ended_at, timezone=zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert f"{local:%Y-%m-%d %H:%M:%S} JST" in email.body


@pytest.mark.django_db(transaction=True)
def test_email_is_written_in_the_subscribers_language(errors_job, users, clock):
    from django.utils import translation

    italian, english = with_email(users["IpsUser"]), with_email(users["IpsAdmin"])
    Profile.objects.create(user=italian, language="it")
    for user in (italian, english):
        subscribe(user, company=errors_job.company)
    execution = finish_run(errors_job, clock, pressed_by=italian)
    run_tasks()
    with translation.override("it"):
        in_italian = execution.ips_result_label
    by_address = {m.to[0]: m for m in mail.outbox}
    assert in_italian != execution.ips_result_label
    assert in_italian in by_address[italian.email].subject
    assert execution.ips_result_label in by_address[english.email].subject


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("channel", ["slack", "teams"])
def test_slack_and_teams_get_their_incoming_webhook_json(channel, errors_job, users, clock, receiver):
    subscribe(users["IpsUser"], receiver, company=errors_job.company, channel=channel)
    execution = finish_run(errors_job, clock, pressed_by=users["IpsUser"])
    run_tasks()
    [(headers, body)] = receiver.posts
    sent = json.loads(body)
    if channel == "slack":
        text = link = sent["text"]
    else:
        assert sent["type"] == "message"
        [attachment] = sent["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        text = attachment["content"]["body"][0]["text"]
        [action] = attachment["content"]["actions"]
        link = action["url"]
    assert "My Test Job" in text and f"https://ipsadmin.example.com/runs/{execution.pk}/" in link
    assert "webhook-signature" not in headers


@pytest.mark.parametrize("channel", ["slack", "teams"])
def test_a_hostile_job_name_pings_and_links_nobody_in_slack_or_teams(channel, receiver):
    """A job name comes from IPS: Slack's <!channel> and links, Markdown links and emphasis in Teams, are text."""
    hostile = "[ipsadmin] <!channel> [click](https://evil.example) **now** <https://evil.example|here> & co"
    link = "https://ipsadmin.example.com/runs/7/"
    if channel == "slack":
        notify_channels.send_slack(receiver.url, hostile, link)
    else:
        notify_channels.send_teams(receiver.url, hostile, link, "Details")
    [(_headers, body)] = receiver.posts
    sent = json.loads(body)
    if channel == "slack":
        text = sent["text"]
        assert "<!channel>" not in text and "<https://evil" not in text and text.endswith(f"<{link}>")
        assert "&lt;!channel&gt;" in text and "&amp; co" in text
    else:
        card = sent["attachments"][0]["content"]
        text = card["body"][0]["text"]
        assert "[click](" not in text and "**now**" not in text
        assert r"\[click\]\(https://evil\.example\)" in text and r"\*\*now\*\*" in text
        assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Details", "url": link}]


@pytest.mark.django_db(transaction=True)
def test_a_private_address_is_refused_and_a_redirect_not_followed(errors_job, users, clock, receiver, settings):
    other = Receiver()
    try:
        subscribe(users["IpsUser"], receiver, company=errors_job.company, channel="webhook")
        receiver.fail_first, receiver.status, receiver.location = 99, 302, other.url
        finish_run(errors_job, clock, pressed_by=users["IpsUser"])
        run_tasks()
        assert len(receiver.posts) == 1 and other.posts == []  # the redirect is a failed try
        assert Notification.objects.get().last_error == "HTTP 302"

        settings.NOTIFY_ALLOW_PRIVATE_TARGETS = False
        with pytest.raises(notify_channels.DeliveryError) as refused:
            notify_channels.post(receiver.url, b"{}", {})
        assert refused.value.permanent and len(receiver.posts) == 1
    finally:
        other.close()


# --- two real workers (PostgreSQL) --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(db_connection.vendor != "postgresql",
                    reason="two db_workers at once need PostgreSQL's row locks (SKIP LOCKED); SQLite runs one worker")
def test_two_db_workers_send_each_notification_once(procs, errors_job, users, clock, receiver):  # noqa: F811
    subscribe(with_email(users["IpsUser"]), company=errors_job.company)
    subscribe(users["IpsAdmin"], receiver, company=errors_job.company, channel="webhook")
    runs = [finish_run(errors_job, clock, pressed_by=users["IpsUser"]) for _ in range(3)]
    # Every event enqueued three times over: the workers race for the same notifications.
    for run in runs:
        for _ in range(2):
            tasks.notify_event.enqueue(Notification.Kind.RUN_ENDED.value, run.pk)
    workers = [procs.db_worker(f"notify-worker-{i}", NOTIFY_ALLOW_PRIVATE_TARGETS=1, SITE_URL="https://x.example")
               for i in (1, 2)]

    def done():
        for w in workers:
            w.check_alive()
        return (not DBTaskResult.objects.filter(status__in=["READY", "RUNNING"]).exists()
                and Notification.objects.filter(state=State.SENT).count() == 6)

    wait_for(done, "the workers to send every notification", timeout=90)
    assert Notification.objects.count() == 6
    assert sorted(d["data"]["run"]["id"] for d in receiver.verified) == sorted(r.pk for r in runs)
    assert len(receiver.posts) == 3
    emails = [m for w in workers for m in log_messages(w.log()) if m.startswith("Subject:")]
    assert len(emails) == 3, emails
    assert DeliveryAttempt.objects.count() == 6 and not DBTaskResult.objects.filter(status="FAILED").exists()
    ran_by = {w.name for w in workers if any("sent by" in m for m in log_messages(w.log()))}
    assert ran_by, "the workers sent them"


# --- the admin ------------------------------------------------------------------------------------


def test_admins_manage_subscriptions_never_see_their_secrets_and_read_the_delivery_log(client, users, company):
    client.force_login(users[SUPERUSER])
    address = "https://hooks.example.net/ips/very-secret-token"
    sub, secret = notify.add_subscription(users["IpsUser"], scope="company", company=company, channel="webhook",
                                          url=address, results={"on_errors": True})
    notification = Notification.objects.create(kind="run_ended", event_id=1, subscription=sub, what="errors")
    DeliveryAttempt.objects.create(notification=notification, ok=False, status_code=500, error="HTTP 500")
    for name in ("subscription", "notification", "deliveryattempt"):
        assert client.get(reverse(f"admin:jobs_{name}_changelist")).status_code == 200
    page = client.get(reverse("admin:jobs_subscription_change", args=[sub.pk])).content.decode()
    assert address not in page and secret not in page and "https://hooks.example.net" in page
    log = client.get(reverse("admin:jobs_notification_change", args=[notification.pk])).content.decode()
    assert "HTTP 500" in log
    # The delivery log is read-only, superusers included.
    assert client.post(reverse("admin:jobs_notification_delete", args=[notification.pk]), {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:jobs_deliveryattempt_add")).status_code == 403

    form = {"user": users["WebServiceUser"].pk, "scope": "company", "company": company.pk, "on_errors": "on",
            "channel": "email"}
    response = client.post(reverse("admin:jobs_subscription_add"), form)
    assert response.status_code == 200 and "may not read the job history" in response.content.decode()
    assert not Subscription.objects.filter(user=users["WebServiceUser"]).exists()
    response = client.post(reverse("admin:jobs_subscription_add"), {**form, "user": users["IpsUser"].pk})
    assert response.status_code == 302
    assert Subscription.objects.filter(user=users["IpsUser"], channel="email", company=company).exists()


# --- Left behind: a worker that died mid-send, a delivery task that was lost ---------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("left", ["worker died mid-send", "task lost"])
def test_the_sweep_sends_what_a_dead_worker_or_a_lost_task_left_behind(
    left, errors_job, users, clock, receiver, dashboard_clock
):
    from jobs.models import Chore
    from jobs.services import chores

    subscriber = users["IpsUser"]
    subscribe(subscriber, receiver, company=errors_job.company, channel="webhook")
    finish_run(errors_job, clock, pressed_by=subscriber)
    # The fan-out ran; its delivery task is lost (the queue emptied), or its worker died after the claim.
    [fan_out] = [t for t in DBTaskResult.objects.all()
                 if t.task_path.endswith("notify_event") and t.args_kwargs["args"][0] == "run_ended"]
    notify.fan_out(*fan_out.args_kwargs["args"])
    notification = Notification.objects.get()
    DBTaskResult.objects.all().delete()
    if left == "worker died mid-send":
        assert notify._claim(notification.pk, timezone.now())  # claimed, then the worker is gone
    chores.start_chore(chores.RESUME_NOTIFICATIONS)
    run_tasks()
    assert receiver.posts == []  # not yet: a claim or a due time that may still be a live worker's
    dashboard_clock.advance(notify.LEFT_BEHIND_AFTER.total_seconds() + settings_claim_seconds() + 1)
    token = Chore.objects.get(name=chores.RESUME_NOTIFICATIONS).token
    assert "1 notifications left behind" in chores.resume_notifications_chore(token)
    run_tasks()
    notification.refresh_from_db()
    assert notification.state == State.SENT and len(receiver.verified) == 1
    # Swept again: nothing left behind, nothing sent twice.
    token = Chore.objects.get(name=chores.RESUME_NOTIFICATIONS).token
    assert "0 notifications" in chores.resume_notifications_chore(token)
    run_tasks()
    assert len(receiver.posts) == 1


def settings_claim_seconds() -> float:
    from django.conf import settings

    return settings.NOTIFY_CLAIM_SECONDS


# --- The admin as a staff user holding only some permissions -------------------------------------

# permissions held -> (may add a subscription for someone else, sees someone else's in the list)
STAFF_TABLE = {
    "add+change+view subscription": (False, False),
    "add+change+view subscription, grant IPS roles": (True, True),
}


@pytest.mark.parametrize("held", STAFF_TABLE)
def test_only_who_may_grant_roles_manages_other_peoples_subscriptions(held, client, users, company, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create(username="helpdesk", is_staff=True, email="helpdesk@example.com")
    codenames = ["add_subscription", "change_subscription", "view_subscription"]
    if "grant" in held:
        codenames.append("grant_ips_roles")
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames))
    Membership.objects.create(user=staff, company=company, role=roles.UserType.IPS_USER)
    others = notify.add_subscription(users["IpsUser"], scope="company", company=company, channel="email",
                                     url="", results={"on_errors": True})[0]
    client.force_login(staff)
    for_others, sees_others = STAFF_TABLE[held]

    # A webhook to the staff user's own address, "for" the superuser (who hears of every company).
    form = {"user": users[SUPERUSER].pk, "scope": "company", "company": company.pk, "on_finish": "on",
            "channel": "webhook", "new_url": "https://attacker.example/hook", "new_secret": "whsec_" + "A" * 32}
    assert client.post(reverse("admin:jobs_subscription_add"), form).status_code == 302
    made = Subscription.objects.get(channel="webhook")
    assert made.user == (users[SUPERUSER] if for_others else staff)
    listing = client.get(reverse("admin:jobs_subscription_changelist")).content.decode()
    assert (f"/{others.pk}/change/" in listing) == sees_others
    change = client.post(reverse("admin:jobs_subscription_change", args=[others.pk]),
                         {**form, "user": users["IpsUser"].pk, "new_url": "https://attacker.example/2"})
    others.refresh_from_db()
    if sees_others:
        assert change.status_code == 302 and others.target() == "https://attacker.example/2"
    else:
        assert change.status_code in (302, 404) and others.channel == "email" and others.target() == ""


# --- Hostile receivers: a name that resolves anew to this machine, an answer that trickles -------


def test_a_name_that_resolves_to_a_public_address_then_to_loopback_is_not_posted_to(settings, receiver, monkeypatch):
    """DNS rebinding: check_url's look-up says public, the connection's says 127.0.0.1: the address
    actually connected to is checked too, and nothing is sent."""
    import socket

    settings.NOTIFY_ALLOW_PRIVATE_TARGETS = False
    real, asked = socket.getaddrinfo, []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.example":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        return real("93.184.216.34" if len(asked) == 1 else "127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = receiver.server.server_address[1]
    with pytest.raises(notify_channels.DeliveryError) as refused:
        notify_channels.post(f"http://rebind.example:{port}/internal-admin", b"{}", {})
    assert refused.value.permanent and "not a public one" in refused.value.error
    assert len(asked) == 2 and receiver.posts == []


@pytest.mark.parametrize("address", ["::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "::127.0.0.1",
                                     "169.254.169.254", "10.0.0.1", "fd00::1"])
def test_addresses_of_this_network_in_any_form_are_not_public(address):
    import ipaddress

    assert not notify_channels.public(ipaddress.ip_address(address))
    assert notify_channels.public(ipaddress.ip_address("93.184.216.34"))


def test_an_answer_that_trickles_in_is_cut_off_at_the_posts_deadline(settings):
    """A read timeout bounds each read: a byte of headers every 0.2 s would never end it. The post's
    deadline (connect + read timeout in all) does, and what came is no answer."""
    import socket

    settings.NOTIFY_ALLOW_PRIVATE_TARGETS = True
    settings.NOTIFY_CONNECT_TIMEOUT, settings.NOTIFY_READ_TIMEOUT = 0.5, 0.5
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def trickle():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        try:
            while not stop.wait(0.2):  # the receiver's pace, not the test's: never waited on
                conn.sendall(b"X")
        except OSError:
            pass
        conn.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        with pytest.raises(notify_channels.DeliveryError) as cut:
            notify_channels.post(f"http://127.0.0.1:{server.getsockname()[1]}/hook", b"{}", {})
        assert "in all" in cut.value.error and not cut.value.permanent
    finally:
        stop.set()
        server.close()


@pytest.mark.django_db(transaction=True)
def test_a_try_that_outlived_its_claim_never_overwrites_the_newer_ones_outcome(job, users, settings, monkeypatch):
    """Worker A's send is slow; its claim runs out, worker B claims and sends; A's send then fails:
    the row stays sent (B's), and A queues no further try."""
    from jobs.models import MissedRun

    settings.NOTIFY_CLAIM_SECONDS = 120
    subscriber = with_email(users["IpsUser"])
    subscribe(subscriber, company=job.company, on_missed=True)
    fire = timezone.now()
    missed = MissedRun.objects.create(job=job, company=job.company, fire_time=fire, last_fire_time=fire,
                                      detected_at=fire)
    [pk] = notify.fan_out("run_missed", missed.pk)
    start, sent, outcome_b = timezone.now(), [], []

    def slow_then_failing(to, subject, body, message_id=""):
        sent.append("A")
        monkeypatch.setattr(notify_channels, "send_email", lambda *a, **k: sent.append("B"))
        outcome_b.append(notify.deliver(pk, now=start + dt.timedelta(seconds=121)))  # B, past A's claim
        raise notify_channels.DeliveryError("timed out")

    monkeypatch.setattr(notify_channels, "send_email", slow_then_failing)
    did_a = notify.deliver(pk, now=start)
    notification = Notification.objects.get(pk=pk)
    assert sent == ["A", "B"] and "sent" in outcome_b[0].text
    assert (notification.state, notification.attempts) == (State.SENT, 2)
    assert did_a.retry_at is None  # A's failure queues nothing: the row is B's
    assert list(DeliveryAttempt.objects.order_by("pk").values_list("ok", flat=True)) == [True, False]


@pytest.mark.django_db(transaction=True)
def test_several_matching_subscriptions_of_one_user_make_one_message_per_address(job, users, receiver):
    """A company's and a job's subscription, and the company's added twice: one email; a webhook
    elsewhere is another address, so one more message."""
    from jobs.models import MissedRun

    subscriber = with_email(users["IpsUser"])
    for scope in ("company", "job", "company"):
        subscribe(subscriber, company=job.company, job=job if scope == "job" else None, scope=scope, on_missed=True)
    subscribe(subscriber, receiver, company=job.company, channel="webhook", on_missed=True)
    fire = timezone.now()
    missed = MissedRun.objects.create(job=job, company=job.company, fire_time=fire, last_fire_time=fire,
                                      detected_at=fire)
    for _ in range(2):  # handled twice: nothing more
        for pk in notify.fan_out("run_missed", missed.pk):
            notify.deliver(pk)
    assert len(mail.outbox) == 1 and len(receiver.verified) == 1
    assert Notification.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_removing_a_subscription_keeps_its_delivery_log_which_is_pruned_after_its_keep(
    client, users, company, settings, dashboard_clock
):
    from jobs.models import Chore
    from jobs.services import chores

    subscriber = users["IpsUser"]
    sub = subscribe(subscriber, company=company)
    sent = Notification.objects.create(kind="run_ended", event_id=1, subscription=sub, what="errors", state=State.SENT,
                                       recipient="ipsuser", channel="email")
    DeliveryAttempt.objects.create(notification=sent, ok=True)
    client.force_login(subscriber)
    client.post(reverse("jobs:preferences"), {"do": "remove", "subscription": sub.pk})
    assert not Subscription.objects.filter(pk=sub.pk).exists()
    sent.refresh_from_db()
    assert sent.subscription is None and sent.recipient == "ipsuser" and sent.attempts_made.count() == 1
    settings.NOTIFY_KEEP_DAYS = 90
    chores.start_chore(chores.RESUME_NOTIFICATIONS)
    token = Chore.objects.get(name=chores.RESUME_NOTIFICATIONS).token
    assert "0 old rows" in chores.resume_notifications_chore(token)
    dashboard_clock.advance(91 * 86400)
    token = Chore.objects.get(name=chores.RESUME_NOTIFICATIONS).token
    assert "deleted" in chores.resume_notifications_chore(token)
    assert not Notification.objects.filter(pk=sent.pk).exists() and not DeliveryAttempt.objects.exists()


# --- The demo of `make run` ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_demo_account_hears_once_of_the_demo_job_that_ends_with_errors_and_not_of_a_clean_one(
    ips_emulator, clock, settings
):
    """load_demo subscribes `ipsadmin` to errors and missed runs in company 47 by email; a run of the
    demo job that ends with errors is told once, a clean one not at all (`make run` prints emails on the
    console: the settings' default with DEBUG on, below)."""
    import io
    import subprocess
    import sys

    from django.core.management import call_command

    from jobs import demo
    from jobs.models import Company, Job

    settings.DEBUG = True
    call_command("load_demo", service_url=ips_emulator.service_url, stdout=io.StringIO())
    company = Company.objects.get(handle="47")
    [sub] = Subscription.objects.filter(user__username=demo.DEMO_SUBSCRIBER)
    assert (sub.scope, sub.company, sub.channel, sub.on_errors, sub.on_missed) == ("company", company, "email", True, True)
    call_command("load_demo", service_url=ips_emulator.service_url, stdout=io.StringIO())  # again: still one
    assert Subscription.objects.filter(user__username=demo.DEMO_SUBSCRIBER).count() == 1
    admin = get_user_model().objects.get(username=demo.DEMO_SUBSCRIBER)
    bold = Job.objects.get(company=company, name="<b>Bold</b> Upload")
    clean = Job.objects.get(company=company, name="My Test Job")
    ips_emulator.state.jobs[clean.handle].outcome = "success"
    for job in (bold, clean):
        finish_run(job, clock, pressed_by=admin)
    run_tasks()
    # Of runs (the test emulator's fire times are long past: the jobs of 47 it fires have missed runs too).
    [email] = [m for m in mail.outbox if "missed" not in m.subject]
    assert email.to == [admin.email] and "<b>Bold</b> Upload" in email.subject
    assert all(Notification.objects.get(pk=int(m.extra_headers["Message-ID"].split("_")[1].split("@")[0])).kind
               == "run_missed" for m in mail.outbox if m is not email)
    printed = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                               "print(settings.EMAIL_BACKEND)"],
        env={**os.environ, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "ipsadmin.settings"},
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert printed == "django.core.mail.backends.console.EmailBackend"


def test_a_bidi_control_in_a_name_from_ips_is_written_as_its_code_point_in_emails(job, users):
    from jobs.models import MissedRun

    job.name = "Invoice \u202egpj.exe"
    job.company.name = "Acme \u202eCo"
    fire = timezone.now()
    missed = MissedRun(job=job, company=job.company, fire_time=fire, last_fire_time=fire, detected_at=fire)
    event = notify.Event("run_missed", 1, "missed", ("on_missed",), job.company, job, missed=missed)
    subject, body = notify.text_of(event, users["IpsUser"])
    for text in (subject, body):
        assert "\u202e" not in text and "Invoice [U+202E]gpj.exe" in text
    assert "Acme [U+202E]Co" in subject
