"""Notifications (issue 19): who wants to hear of which runs, and by what channel; what was sent, and each try.

A Subscription's URL and webhook secret are secrets: encrypted at rest like IPS passwords (jobs/crypto.py),
shown once (the secret, when made) and never again. A Notification is one event for one subscription, made
once (its unique key) and claimed by compare-and-set before each send: two workers never send it twice."""

from __future__ import annotations

import secrets as _secrets
from base64 import b64encode
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .. import crypto


class Subscription(models.Model):
    """One user's wish to hear of some results of some runs, by one channel."""

    class Scope(models.TextChoices):
        MINE = "mine", _("my presses")
        JOB = "job", _("a job")
        COMPANY = "company", _("a company")

    class Channel(models.TextChoices):
        EMAIL = "email", _("email")
        WEBHOOK = "webhook", _("signed webhook")
        SLACK = "slack", _("Slack")
        TEAMS = "teams", _("Microsoft Teams")

    #: The channels that post to a URL.
    URL_CHANNELS = (Channel.WEBHOOK, Channel.SLACK, Channel.TEAMS)

    #: What a subscriber may ask to hear of: field name -> words.
    RESULTS = {
        "on_fatal": _("fatal errors"),
        "on_errors": _("errors"),
        "on_warnings": _("warnings"),
        "on_finish": _("every finish"),
        "on_not_through": _("did not go through"),
        "on_missed": _("missed runs"),
    }

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="subscriptions",
    )
    scope = models.CharField(_("scope"), max_length=10, choices=Scope.choices)
    company = models.ForeignKey("jobs.Company",
                                verbose_name=_("company"), null=True, blank=True, on_delete=models.CASCADE,
                                related_name="subscriptions", help_text=_("For the scope 'a company'."))
    job = models.ForeignKey("jobs.Job", verbose_name=_("job"), null=True, blank=True, on_delete=models.CASCADE,
                            related_name="subscriptions", help_text=_("For the scope 'a job'."))
    on_fatal = models.BooleanField(_("fatal errors"), default=False)
    on_errors = models.BooleanField(_("errors"), default=False)
    on_warnings = models.BooleanField(_("warnings"), default=False)
    on_finish = models.BooleanField(_("every finish"), default=False)
    on_not_through = models.BooleanField(_("did not go through"), default=False,
                                         help_text=_("Refused by IPS, unreachable, timed out, bad reply."))
    on_missed = models.BooleanField(_("missed runs"), default=False)
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices, default=Channel.EMAIL)
    # Encrypted (crypto.encrypt); empty for email. target_hint is what pages may show of it.
    target_encrypted = models.TextField(_("target encrypted"), blank=True, editable=False)
    target_hint = models.CharField(_("target hint"), max_length=255, blank=True, editable=False)
    secret_encrypted = models.TextField(_("secret encrypted"), blank=True, editable=False)
    paused = models.BooleanField(_("paused"), default=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
        ordering = ["user", "created_at", "id"]
        constraints = [
            # The scope names exactly the object it needs.
            models.CheckConstraint(
                condition=(
                    models.Q(scope="mine", company__isnull=True, job__isnull=True)
                    | models.Q(scope="job", job__isnull=False)
                    | models.Q(scope="company", company__isnull=False, job__isnull=True)
                ),
                name="subscription_scope_target",
            ),
        ]
        indexes = [
            # Fan-out: the live subscriptions of a company, of a job, of a presser.
            models.Index(fields=["company"], condition=models.Q(paused=False), name="subscription_live_company"),
            models.Index(fields=["job"], condition=models.Q(paused=False), name="subscription_live_job"),
            models.Index(fields=["user"], condition=models.Q(paused=False, scope="mine"),
                         name="subscription_live_mine"),
        ]

    def __str__(self):
        return f"{self.user}: {self.get_channel_display()} for {self.scope_label()}"

    def scope_label(self) -> str:
        if self.scope == self.Scope.JOB and self.job_id:
            return f"{self.job.name} ({self.job.company})"
        if self.scope == self.Scope.COMPANY and self.company_id:
            return str(self.company)
        return str(self.Scope.MINE.label)

    def results_labels(self) -> list:
        return [label for field, label in self.RESULTS.items() if getattr(self, field)]

    def scope_company(self):
        """The company whose job logs the subscriber must be allowed to read (None: the presser's own)."""
        if self.scope == self.Scope.JOB:
            return self.job.company
        if self.scope == self.Scope.COMPANY:
            return self.company
        return None

    # --- secrets -----------------------------------------------------------------

    def set_target(self, url: str) -> None:
        self.target_encrypted = crypto.encrypt(url) if url else ""
        parts = urlsplit(url) if url else None
        self.target_hint = f"{parts.scheme}://{parts.hostname}" if parts and parts.hostname else ""

    def target(self) -> str:
        return crypto.decrypt(self.target_encrypted) if self.target_encrypted else ""

    def new_secret(self) -> str:
        """A fresh Standard Webhooks secret (``whsec_`` + base64 of 24 random bytes), stored encrypted;
        returned once for its owner to copy."""
        secret = "whsec_" + b64encode(_secrets.token_bytes(24)).decode()
        self.secret_encrypted = crypto.encrypt(secret)
        return secret

    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""


class Notification(models.Model):
    """One event told to one subscription: made once (the unique key), sent once, retried on failure."""

    class Kind(models.TextChoices):
        RUN_ENDED = "run_ended", _("run ended")
        PRESS_ENDED = "press_ended", _("did not go through")
        RUN_MISSED = "run_missed", _("missed run")

    class State(models.TextChoices):
        PENDING = "pending", _("to send")
        SENDING = "sending", _("sending")
        RETRY = "retry", _("to try again")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        SKIPPED = "skipped", _("not sent")

    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    #: The Execution's pk (run_ended, press_ended) or the MissedRun's (run_missed).
    event_id = models.BigIntegerField(_("event id"))
    #: None once its subscription was removed: the log stays (whom and how it went: ``recipient``, ``channel``).
    subscription = models.ForeignKey(
        Subscription,
        verbose_name=_("subscription"),
        null=True, on_delete=models.SET_NULL, related_name="notifications",
    )
    recipient = models.CharField(
        _("recipient"), max_length=150, blank=True, help_text=_("The subscriber's user name, as it was."),
    )
    channel = models.CharField(_("channel"), max_length=10, blank=True, choices=Subscription.Channel.choices)
    #: What happened, as the subscription matched it (errors, fatal, ok, refused, missed, ...).
    what = models.CharField(_("what"), max_length=20)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    next_try_at = models.DateTimeField(_("next try at"), default=timezone.now)
    #: A claimed send that outlives this was cut off (its worker died): it may be claimed again.
    claimed_until = models.DateTimeField(_("claimed until"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-created_at", "-id"]
        constraints = [
            # Exactly once: one notification per event and subscription, however often the event is handled.
            models.UniqueConstraint(fields=["kind", "event_id", "subscription"], name="notification_once"),
        ]
        indexes = [
            # The admin's delivery log of one subscription, newest first.
            models.Index(fields=["subscription", "-created_at"], name="notification_subscription"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.event_id} to {self.subscription_id}: {self.state}"


class DeliveryAttempt(models.Model):
    """One try of sending a notification: the receiver's status code or the error, when. Read-only."""

    notification = models.ForeignKey(
        Notification, verbose_name=_("notification"), on_delete=models.CASCADE, related_name="attempts_made",
    )
    at = models.DateTimeField(_("at"), default=timezone.now)
    ok = models.BooleanField(_("ok"), default=False)
    status_code = models.PositiveSmallIntegerField(_("status code"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["-at", "-id"]
        indexes = [
            # The attempts of one notification (admin inline), newest first.
            models.Index(fields=["notification", "-at"], name="deliveryattempt_recent"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {'ok' if self.ok else 'failed'} {self.status_code or self.error[:60]}"
