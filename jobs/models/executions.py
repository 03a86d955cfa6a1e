"""Executions: the audit trail of every press of Run, and the one door to pruning it."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import BooleanField, F, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import ipsversions
from .append_only import AppendOnly, AppendOnlyQuerySet, Born, Rules, Stage, set_null_by_database
from .background import RunFollow
from .connections import Company

# The job by name ("jobs.Job"): .catalogue imports this module, its
# JobQuerySet reads the executions.


class _Pruning(threading.local):
    active = False


_pruning = _Pruning()


@contextlib.contextmanager
def allow_pruning():
    """The one door through which executions may be deleted (prune_executions)."""
    _pruning.active = True
    try:
        yield
    finally:
        _pruning.active = False


#: IPS calls one Run may wait on in turn: getActiveJobs (is it running?), then
#: executeJob; the watcher names the run. Each has a whole-reply deadline of
#: connect + read timeout (jobs/ips/).
IPS_CALLS_PER_RUN = 2
#: How long after its acceptance a run is followed in IPS again after a reload.
FOLLOW_FOR = dt.timedelta(minutes=15)


class ExecutionQuerySet(AppendOnlyQuerySet):
    def sent(self):
        """Presses of Run that reached IPS (or tried to): a job's runs, not refusals made here, nor stops."""
        return self.filter(operation="executeJob").exclude(outcome__in=Execution.NOT_SENT)

    def stale(self, now=None):
        """'sending' rows older than stale_after(): their process died mid-call."""
        cutoff = (now or timezone.now()) - Execution.stale_after()
        return self.filter(outcome=Execution.Outcome.SENDING, requested_at__lt=cutoff)

    def prune(self, before) -> int:
        """Delete finished rows requested before ``before``: the only deletion of audit rows.

        On PostgreSQL through ipsadmin_prune_executions() (migration 0007), a
        function owned by a role the application does not hold; it keeps at
        least PRUNE_MIN_DAYS of history whoever calls it."""
        connection = connections[self.db]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT ipsadmin_prune_executions(%s)", [before])
                return cursor.fetchone()[0]
        old = self.filter(requested_at__lt=before).exclude(outcome=Execution.Outcome.SENDING)
        with transaction.atomic(using=self.db), allow_pruning():
            RunFollow.objects.filter(execution__in=old).delete()
            count, _ = old.delete()
        return count

    def open_runs(self):
        """Runs IPS has not said the end of: accepted (pressed or seen in IPS), or pressed with an
        unknown fate (IPS may have started them). The watcher's work (index execution_open_runs)."""
        return self.filter(
            Q(outcome=Execution.Outcome.ACCEPTED) | Q(outcome__in=Execution.UNCERTAIN, sent_at__isnull=False),
            operation="executeJob", ips_result="",
        )

    def uncertain(self, now=None):
        """Presses sent to IPS whose fate is unknown: IPS may or may not have started the run.
        Another press of the job waits until the watcher knows (never past the follow deadline)."""
        since = (now or timezone.now()) - settings.IPS_FOLLOW_DEADLINE
        return (
            self.open_runs().exclude(outcome=Execution.Outcome.ACCEPTED).filter(requested_at__gte=since)
        )

    def last_run_of(self, job):
        """The job's latest run sent to IPS, or None."""
        return self.filter(job=job).sent().order_by("-requested_at", "-id").first()

    def failures(self):
        """Runs that failed: IPS never started them (refused, unreachable, ...) or ended them with errors.

        The condition of the partial index execution_job_failures, word for word."""
        return self.filter(FAILED_RUN)

    def by_usernames(self, names):
        """Rows of these user names, in any case (index execution_user_recent)."""
        names = list(names)
        if len(names) == 1:
            return self.alias(username_lower=Lower("username")).filter(username_lower=Lower(models.Value(names[0])))
        return self.alias(username_lower=Lower("username")).filter(
            username_lower__in=[Lower(models.Value(n)) for n in names]
        )


#: Runs that failed, for "last failure" and failure counts: never started by
#: IPS (whatever went wrong on the way), or ended by IPS with errors or a
#: fatal error. Not failures: refusals made here (the run was never sent),
#: warnings, a run stopped on purpose.
FAILED_OUTCOMES = ("refused", "unreachable", "timed_out", "bad_reply", "interrupted", "error", "ips_error")
FAILED_IPS_RESULTS = ("errors", "fatal")
# Literal SQL, not parameters: SQLite uses a partial index only when the
# query repeats the index's WHERE terms, and a bound parameter never matches
# a literal. The same expression is the index's condition and the filter.
FAILED_RUN = RawSQL(
    "operation = 'executeJob' AND (outcome IN ({}) OR ips_result IN ({}))".format(
        ", ".join(f"'{o}'" for o in FAILED_OUTCOMES), ", ".join(f"'{r}'" for r in FAILED_IPS_RESULTS)
    ),
    (),
    output_field=BooleanField(),
)


class Execution(AppendOnly):
    """One press of Run, whatever happened: the audit trail.

    Snapshots keep the handles, username and role, so that deleting a job or
    a user never erases history. Outcome fields are written by services.py.
    Append-only (``RULES``, below): born 'sending' or refused, finished once,
    its IPS result written once by following the run.
    """

    class Outcome(models.TextChoices):
        DENIED = "denied", _("denied")
        ALREADY_RUNNING = "already_running", _("already running")
        JOB_GONE = "job_gone", _("job gone from IPS")
        SENDING = "sending", _("sending")
        ACCEPTED = "accepted", _("accepted")
        REFUSED = "refused", _("refused by IPS")
        UNREACHABLE = "unreachable", _("IPS unreachable")
        TIMED_OUT = "timed_out", _("timed out")
        BAD_REPLY = "bad_reply", _("bad reply from IPS")
        INTERRUPTED = "interrupted", _("interrupted")
        ERROR = "error", _("dashboard error")
        NOT_RUNNING = "not_running", _("not running in IPS")
        IPS_ERROR = "ips_error", _("IPS error page")

    class IpsResult(models.TextChoices):
        """What IPS did with an accepted run, from its final log (empty: not known yet)."""

        OK = "ok", _("finished")
        WARNINGS = "warnings", _("finished with warnings")
        ERRORS = "errors", _("finished with errors")
        FATAL = "fatal", _("fatal error")
        STOPPED = "stopped", _("stopped")
        NO_RESULT = "no_result", _("no result from IPS")
        NOT_STARTED = "not_started", _("not started by IPS")

    class StartedBy(models.TextChoices):
        """Who started a run, as far as the dashboard and IPS can say."""

        HERE = "here", _("pressed here")
        SCHEDULE = "schedule", _("IPS schedule")
        OTHER = "other", _("another IPS client")

    #: Refused here, never sent: history, not a job's "last run".
    NOT_SENT = (Outcome.DENIED, Outcome.ALREADY_RUNNING, Outcome.JOB_GONE, Outcome.NOT_RUNNING)
    #: A press that went wrong after executeJob was sent: IPS may have started the run.
    UNCERTAIN = (Outcome.TIMED_OUT, Outcome.UNREACHABLE, Outcome.BAD_REPLY, Outcome.IPS_ERROR,
                 Outcome.INTERRUPTED, Outcome.ERROR)

    #: What following the run writes on an accepted row, until ``ips_result`` is set;
    #: then the row is final like any other.
    IPS_FIELDS = frozenset(
        {
            "ips_run_handle",
            "ips_run_name",
            "ips_state",
            "ips_progress",
            "ips_log_type",
            "ips_success_count",
            "ips_warning_count",
            "ips_error_count",
            "ips_duplicate_count",
            "ips_update_count",
            "ips_total_count",
            "ips_fatal",
            "ips_started_at",
            "ips_ended_at",
            "ips_runtime_ms",
            "ips_result",
            "ips_result_at",
        }
    )

    operation = models.CharField(_("operation"), max_length=40, default="executeJob")
    started_by = models.CharField(_("started by"),
        max_length=10, choices=StartedBy.choices, default=StartedBy.HERE, db_default=StartedBy.HERE,
        help_text=_("Pressed here, or a run IPS started that the dashboard found in its job logs."),
    )
    job = models.ForeignKey(
        "jobs.Job", verbose_name=_("job"), null=True, on_delete=set_null_by_database, related_name="executions",
    )
    company = models.ForeignKey(
        Company, verbose_name=_("company"), null=True, on_delete=set_null_by_database, related_name="executions",
    )
    company_handle = models.CharField(_("company handle"), max_length=255)
    job_handle = models.TextField(_("job handle"))
    job_name = models.TextField(_("job name"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True, on_delete=set_null_by_database, related_name="executions"
    )
    username = models.CharField(_("username"), max_length=150)
    role = models.CharField(_("role"), max_length=30, blank=True, help_text=_("The user's IPS user type at the time."))
    role_from_ips = models.BooleanField(_("role read from IPS"), default=False)
    role_read_at = models.DateTimeField(
        _("role read from IPS at"), null=True, blank=True,
        help_text=_("When IPS last said so, for a role read from IPS.")
    )
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices)
    message = models.TextField(_("message"), blank=True, help_text=_("What the user was told."))
    fault_family = models.CharField(_("fault family"), max_length=40, blank=True)
    fault_code = models.IntegerField(_("fault code"), null=True, blank=True)
    fault_reason = models.TextField(_("fault reason"), blank=True)
    requested_at = models.DateTimeField(_("requested at"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    # IPS's own time just before the action was sent (the Date of its answer to the look
    # before): the run a press started cannot have begun earlier, in IPS's clock.
    ips_clock_at = models.DateTimeField(_("IPS time when sent"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # Big: a row left 'sending' for weeks gets its (long) time when reconciled.
    duration_ms = models.PositiveBigIntegerField(
        _("request time (ms)"), null=True, blank=True, help_text=_("How long the dashboard's calls to IPS took.")
    )
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=512, blank=True)
    request_id = models.CharField(_("request id"), max_length=64)
    # The run IPS started, as getActiveJobs named it right after executeJob:
    # following the run looks for exactly this one, never the job's latest.
    ips_run_handle = models.TextField(_("IPS run handle"), blank=True)
    ips_run_name = models.TextField(_("IPS run name"), blank=True)
    # What IPS did with the run, written by following it (jobs/tasks.py and
    # the browser's polls alike), final once ips_result is set.
    ips_state = models.CharField(_("IPS state"), max_length=20, blank=True, help_text=_("While the run goes on."))
    ips_progress = models.PositiveSmallIntegerField(_("IPS progress (%)"), null=True, blank=True)
    ips_log_type = models.CharField(_("IPS log type"), max_length=64, blank=True)
    ips_success_count = models.PositiveIntegerField(_("IPS success count"), null=True, blank=True)
    ips_warning_count = models.PositiveIntegerField(_("IPS warning count"), null=True, blank=True)
    ips_error_count = models.PositiveIntegerField(_("IPS error count"), null=True, blank=True)
    ips_duplicate_count = models.PositiveIntegerField(_("IPS duplicate count"), null=True, blank=True)
    ips_update_count = models.PositiveIntegerField(_("IPS update count"), null=True, blank=True)
    ips_total_count = models.PositiveIntegerField(_("IPS total count"), null=True, blank=True)
    ips_fatal = models.BooleanField(_("IPS fatal error"), null=True, blank=True)
    ips_started_at = models.DateTimeField(_("IPS start"), null=True, blank=True)
    ips_ended_at = models.DateTimeField(_("IPS end"), null=True, blank=True)
    ips_runtime_ms = models.PositiveBigIntegerField(_("IPS runtime (ms)"), null=True, blank=True)
    ips_result = models.CharField(_("IPS result"), max_length=20, choices=IpsResult.choices, blank=True)
    ips_result_at = models.DateTimeField(_("IPS result recorded"), null=True, blank=True)

    objects = ExecutionQuerySet.as_manager()

    class Meta(AppendOnly.Meta):
        verbose_name = _("execution")
        verbose_name_plural = _("executions")
        ordering = ["-requested_at", "-id"]
        constraints = [
            # At most one run in flight per job, across workers and servers.
            models.UniqueConstraint(
                fields=["job"],
                condition=Q(outcome="sending"),
                name="execution_one_in_flight_per_job",
            ),
            # One row per IPS run: a press and the watcher's find of the same run are one row.
            models.UniqueConstraint(
                fields=["company", "ips_run_handle"],
                condition=Q(operation="executeJob") & ~Q(ips_run_handle=""),
                name="execution_one_row_per_ips_run",
            ),
        ]
        # History pages by keyset (jobs/history.py): each filter has an index
        # that hands its rows over already in the page's order, (requested_at,
        # id) newest first, read backwards for oldest first; id breaks ties, so
        # a page starts exactly after the last row of the one before. No page
        # ever sorts or counts what it does not show.
        indexes = [
            # History newest (or oldest) first: everything (superuser), a date
            # range, and on SQLite several companies at once (their filter is
            # checked along this scan, see history.visible_to); the admin's changelist.
            models.Index(fields=["-requested_at", "-id"], name="execution_recent"),
            # History of one company.
            models.Index(fields=["company", "-requested_at", "-id"], name="execution_company_recent"),
            # History of one job, its page's recent runs and stats, and "last
            # execution" per job on the jobs page. Outcome and IPS result ride along:
            # a job's rows with a rare outcome or result (history.plan walks the job's
            # rows, checking them) are checked and counted in the index, no row read.
            models.Index(fields=["job", "-requested_at", "-id", "outcome", "ips_result"],
                         name="execution_job_status_recent"),
            # History by user, in any case ("Mine" too): the username snapshot outlives the user.
            models.Index(Lower("username"), F("requested_at").desc(), F("id").desc(), name="execution_user_recent"),
            # History by outcome, and by IPS result.
            models.Index(fields=["outcome", "-requested_at", "-id"], name="execution_outcome_recent"),
            models.Index(fields=["ips_result", "-requested_at", "-id"], name="execution_ips_result_recent"),
            # History sorted by IPS runtime or by request time, longest (or shortest) first.
            models.Index(fields=["-ips_runtime_ms", "-id"], name="execution_ips_runtime"),
            # requested_at rides along: a time range by request time checks each entry in the index
            # (SQLite reads no row it skips; the last 30 days, shortest first, walked 15k rows at 1M).
            models.Index(fields=["-duration_ms", "-id", "requested_at"], name="execution_req_time_at"),
            # The admin's search by request id (the id a failed page tells its user).
            models.Index(fields=["request_id"], name="execution_request_id"),
            # A job's last failure: the first entry, however many runs succeeded since.
            models.Index(
                fields=["job", "-requested_at", "-id"], condition=Q(FAILED_RUN), name="execution_job_failures"
            ),
            # The watcher: a company's runs IPS has not said the end of (open_runs()).
            models.Index(
                fields=["company", "requested_at"],
                condition=Q(operation="executeJob", ips_result="",
                            outcome__in=["accepted", "timed_out", "unreachable", "bad_reply", "ips_error",
                                         "interrupted", "error"]),
                name="execution_open_runs",
            ),
            # The watcher: a company's accepted Stops of the runs it records (their result is "stopped").
            models.Index(
                fields=["company", "ips_run_handle"], condition=Q(operation="stopJob", outcome="accepted"),
                name="execution_accepted_stops",
            ),
            # History by who started the run (pressed here, IPS schedule, other clients).
            models.Index(fields=["started_by", "-requested_at", "-id"], name="execution_started_by_recent"),
            # reconcile_executions: stale in-flight rows by age.
            models.Index(
                fields=["requested_at"], condition=Q(outcome="sending"), name="execution_inflight_age"
            ),
            # History of a user, or a company, with an outcome or an IPS result (history.COMPOSITES):
            # rare together while each is common (one user's refusals, a small company's fatal
            # runs), counted and read in time order here instead of walking either's rows.
            models.Index(Lower("username"), F("outcome"), F("requested_at").desc(), F("id").desc(),
                         name="execution_user_outcome"),
            models.Index(Lower("username"), F("ips_result"), F("requested_at").desc(), F("id").desc(),
                         name="execution_user_result"),
            models.Index(fields=["company", "outcome", "-requested_at", "-id"], name="execution_company_outcome"),
            models.Index(fields=["company", "ips_result", "-requested_at", "-id"], name="execution_company_result"),
            # History of an outcome sorted by IPS runtime or by request time (history.plan walks
            # them in order, the other filters checked on the way): the order correlates
            # with the outcome (refusals take no time), so walking the sort's index past the
            # other outcomes has no bound; here each outcome's rows are in that order.
            models.Index(fields=["outcome", "-ips_runtime_ms", "-id"], name="execution_outcome_runtime"),
            models.Index(fields=["outcome", "-duration_ms", "-id"], name="execution_outcome_req_time"),
            # The same for an IPS result: only sent runs have one, and the shortest request
            # times are refusals that were never sent.
            models.Index(fields=["ips_result", "-ips_runtime_ms", "-id"], name="execution_result_runtime"),
            models.Index(fields=["ips_result", "-duration_ms", "-id"], name="execution_result_req_time"),
            # One job's history sorted by IPS runtime or by request time (PostgreSQL reads a busy
            # job's page in order here, instead of sorting its every run).
            models.Index(fields=["job", "-ips_runtime_ms", "-id"], name="execution_job_runtime"),
            models.Index(fields=["job", "-duration_ms", "-id"], name="execution_job_req_time"),
            # A user's runs of one job or of a job-name part's jobs (history.plan): rare together
            # while each is common; counted here, and one job's read in time order.
            models.Index(Lower("username"), F("job"), F("requested_at").desc(), F("id").desc(),
                         name="execution_user_job"),
            # A user's runs in one company (history.COMPOSITES): counted here, not the user's rows
            # walked with each row read for its company (a small company's share: 18 ms at 1M rows).
            models.Index(Lower("username"), F("company"), F("requested_at").desc(), F("id").desc(),
                         name="execution_user_company"),
            # A user's runs sorted by IPS runtime or by request time: a page read in order here,
            # not the value's index walked past every other user's runs (×1.6–2.4 at 1M on PostgreSQL).
            models.Index(Lower("username"), F("ips_runtime_ms").desc(), F("id").desc(), name="execution_user_runtime"),
            models.Index(Lower("username"), F("duration_ms").desc(), F("id").desc(), name="execution_user_req_time"),
        ]

    def __str__(self):
        return f"{self.job_name} by {self.username} at {self.requested_at:%Y-%m-%d %H:%M:%S}: {self.outcome}"

    #: A row is born 'sending' (then finished once by services.press.finish()), or
    #: as a refusal that never reached IPS.
    INSERTABLE = (Outcome.SENDING, *NOT_SENT)
    #: What services.press.finish() writes on a 'sending' row (and the run IPS named, for a stop).
    FINISH_FIELDS = ("outcome", "message", "fault_family", "fault_code", "fault_reason", "sent_at", "ips_clock_at",
                     "finished_at", "duration_ms", "ips_run_handle", "ips_run_name")
    #: Empty in a run the watcher found in IPS (nobody pressed it here): no press, nobody's request.
    SEEN_FRESH = ("fault_family", "fault_code", "fault_reason", "sent_at", "ips_clock_at", "finished_at",
                  "duration_ms", "user_id", "role", "role_read_at", "message", "client_ip", "user_agent",
                  "request_id")

    RULES = Rules(
        kind="an audit trail",
        row="execution",
        done="finished",
        born=(
            Born(when={"outcome": (Outcome.SENDING,), "started_by": (StartedBy.HERE,)},
                 fresh=tuple(sorted({*FINISH_FIELDS, *IPS_FIELDS} - {"outcome"}))),
            Born(when={"outcome": NOT_SENT, "started_by": (StartedBy.HERE,)},
                 fresh=tuple(sorted({"fault_family", "fault_code", "fault_reason", "sent_at", "ips_clock_at",
                                     *IPS_FIELDS}))),
            # A run IPS started (its schedule, another client), found by the watcher.
            Born(when={"operation": ("executeJob",), "outcome": (Outcome.ACCEPTED,),
                       "started_by": (StartedBy.SCHEDULE, StartedBy.OTHER)},
                 fresh=tuple(sorted(SEEN_FRESH))),
        ),
        born_as="sending, as a refusal made here, or as a run found in IPS",
        later=("ips_result",),
        stages=(
            Stage(when={"outcome": (Outcome.SENDING,)}, writable=FINISH_FIELDS),
            # Following an accepted run, until its IPS result is recorded.
            Stage(when={"operation": ("executeJob",), "outcome": (Outcome.ACCEPTED,), "ips_result": ("",)},
                  writable=tuple(sorted(IPS_FIELDS))),
            # A failed press that sent nothing: final (the first matching stage wins).
            Stage(when={"operation": ("executeJob",), "outcome": UNCERTAIN, "sent_at": (None,)}, writable=()),
            # A press whose fate is unknown: the watcher finds its run in IPS, or that there was none.
            Stage(when={"operation": ("executeJob",), "outcome": UNCERTAIN, "ips_result": ("",)},
                  writable=tuple(sorted(IPS_FIELDS))),
        ),
        once=("ips_run_handle",),
        clock=("requested_at", "sent_at", "finished_at", "ips_result_at"),
        deleted_by="manage.py prune_executions",
    )

    @classmethod
    def check_delete(cls) -> None:
        if not _pruning.active:
            super().check_delete()

    @staticmethod
    def stale_after() -> dt.timedelta:
        """Age after which a 'sending' row belongs to a process that died mid-call.

        A live run may wait out the whole-reply deadline of each of its IPS
        calls: only past all of them (plus the margin) is its process taken for dead."""
        per_call = settings.IPS_CONNECT_TIMEOUT + settings.IPS_READ_TIMEOUT
        return dt.timedelta(seconds=IPS_CALLS_PER_RUN * per_call + settings.IPS_STALE_MARGIN)

    def is_in_flight(self, now=None) -> bool:
        """Being started by a live process (a stale 'sending' row is not: Run is offered again)."""
        now = now or timezone.now()
        return self.outcome == self.Outcome.SENDING and self.requested_at > now - self.stale_after()

    def is_followed(self, now=None) -> bool:
        """Followed by the browser too: still going in IPS, or ended lately."""
        now = now or timezone.now()
        if self.operation != "executeJob" or self.outcome != self.Outcome.ACCEPTED:
            return False
        return self.is_following or self.requested_at > now - FOLLOW_FOR

    @property
    def is_open(self) -> bool:
        """IPS has not said the end of this run yet (accepted, or a press of unknown fate): watched."""
        if self.operation != "executeJob" or self.ips_result:
            return False
        return self.outcome == self.Outcome.ACCEPTED or (self.outcome in self.UNCERTAIN and self.sent_at is not None)

    @property
    def is_uncertain(self) -> bool:
        """Sent, and IPS may or may not have started it: the watcher has not found out yet."""
        return self.is_open and self.outcome != self.Outcome.ACCEPTED

    @property
    def is_following(self) -> bool:
        """An accepted run, and IPS has not said how it ended yet."""
        return self.operation == "executeJob" and self.outcome == self.Outcome.ACCEPTED and not self.ips_result

    @property
    def ips_result_label(self) -> str:
        """The result in a few words: "finished: 205 warnings", "fatal error"."""
        R = self.IpsResult
        if not self.ips_result:
            return ""
        if self.ips_result == R.WARNINGS:
            count = self.ips_warning_count or 0
            return ngettext("finished: %(count)s warning", "finished: %(count)s warnings", count) % {"count": count}
        if self.ips_result == R.ERRORS:
            count = self.ips_error_count or 0
            return ngettext("finished: %(count)s error", "finished: %(count)s errors", count) % {"count": count}
        if self.ips_result == R.NO_RESULT:
            hours = int(settings.IPS_FOLLOW_DEADLINE.total_seconds() // 3600)
            if hours:
                return gettext("no result from IPS after %(hours)s h") % {"hours": hours}
            return gettext("no result from IPS")
        return str(self.get_ips_result_display())

    @property
    def ips_runtime(self) -> dt.timedelta | None:
        return None if self.ips_runtime_ms is None else dt.timedelta(milliseconds=self.ips_runtime_ms)

    @property
    def fault_label(self) -> str:
        if self.fault_code is None:
            return ""
        name = ipsversions.FAULT_NAMES.get(self.fault_code, "")
        return f"{self.fault_code} {name}".strip()

    class NotAsStored(Exception):
        """save_if(): the stored row no longer held what was expected; nothing was written."""

    def save_if(self, update_fields=None, **expected) -> None:
        """save() only if the stored row still holds ``expected`` (``outcome="sending"``), else NotAsStored.

        One UPDATE … WHERE ``expected``: no row lock and no read first, and the
        first of two processes finishing a row still wins, once (services.press)."""
        # No savepoint: a row found changed is an UPDATE that matched nothing, no database error,
        # and NotAsStored is raised once save() is over (inside it, Django would doom the caller's
        # transaction), so that transaction goes on whole (services.press.finish inside its commit).
        self._expected, self._matched = expected, True
        stored = dict(getattr(self, "_stored", None) or {})
        try:
            self.save(update_fields=update_fields)
        finally:
            self._expected = None
        if not self._matched:
            self._stored = stored  # nothing was written: the row is as it was
            raise self.NotAsStored()

    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update):
        expected = getattr(self, "_expected", None)
        if expected:
            base_qs = base_qs.filter(**expected)
        updated = super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
        if expected and not updated:
            self._matched = False
            return True  # nothing to insert instead: save_if() says what happened
        return updated
