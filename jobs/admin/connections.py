"""Connections, their companies and jobs: the connection form (its URLs and password one secret) and the IPS actions."""

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.text import Truncator, format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import ips
from ..models import Company, CompanyWatch, Connection, Job, Membership, MembershipChange
from ..services import connections, sync
from .people import MembershipInline, MembershipsByServiceMixin, RecordsMembershipsOnDelete
from .values import ReadableValues, boolean
from .values import at as _at


def _https_urls(db_field, **kwargs):
    """Model fields as form fields, a URL assuming https (the admin builds forms on this one: Django 6's default)."""
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class ConnectionForm(forms.ModelForm):
    # Write-only: never rendered back, and left unchanged when blank.
    password = forms.CharField(
        label=_("Service account password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Stored encrypted. Leave blank to keep the current password."),
    )

    service_url = forms.URLField(
        label=_("Service URL"), required=False, assume_scheme="https", max_length=500,
        help_text=Connection._meta.get_field("service_url").help_text,
    )
    wsdl_url = forms.URLField(
        label=_("WSDL URL"), required=False, assume_scheme="https", max_length=500,
        help_text=Connection._meta.get_field("wsdl_url").help_text,
    )
    # Blank keeps the current interval (a new connection: the default), like the password.
    sync_interval = forms.DurationField(
        label=_("Sync every"), required=False,
        help_text=format_lazy("{} {}", Connection._meta.get_field("sync_interval").help_text,
                              _("Leave blank to keep it as it is.")),
    )

    class Meta:
        model = Connection
        fields = ["name", "region", "service_url", "wsdl_url", "api_version", "username", "ips_sign_in",
                  "sync_interval"]
        formfield_callback = _https_urls

    def clean_sync_interval(self):
        value = self.cleaned_data.get("sync_interval")
        if value is None:
            return self.instance.sync_interval or Connection._meta.get_field("sync_interval").get_default()
        return value

    def _clean_url(self, name: str) -> str:
        # Parsed as the HTTP client will connect: https only (http to this machine), no user info.
        url = self.cleaned_data.get(name) or ""
        problem = connections.url_problem(url) if url else None
        if problem:
            raise forms.ValidationError(problem)
        return url

    def clean_service_url(self):
        return self._clean_url("service_url")

    def clean_wsdl_url(self):
        return self._clean_url("wsdl_url")

    def clean(self):
        cleaned = super().clean()
        if not self.instance.has_password and not cleaned.get("password"):
            self.add_error("password", _("A new connection needs the service account's password."))
        elif self.instance.pk and not cleaned.get("password") and not self.errors:
            # The addresses and the password are one secret: whoever points the connection
            # elsewhere must know the password, or Test connection would hand it over there.
            # (In clean(), self.instance still holds the stored values.)
            stored = connections.endpoint_origins(
                self.instance.region, self.instance.service_url, self.instance.wsdl_url
            )
            asked = connections.endpoint_origins(*(self._asked(name) for name in ("region", "service_url", "wsdl_url")))
            if stored != asked:
                self.add_error("password", _(
                    "The service URL, region or WSDL URL now points to another host: enter the service account's "
                    "password again, or the stored one would be sent there."
                ))
        return cleaned

    def _asked(self, name: str) -> str:
        """The value the form would save: a field read-only here (not in the form) keeps the stored one."""
        if name in self.fields:
            return self.cleaned_data.get(name, "")
        return getattr(self.instance, name)

    def save(self, commit=True):
        if self.cleaned_data.get("password"):
            self.instance.set_password(self.cleaned_data["password"])
        return super().save(commit)


def _may_ask(modeladmin, request, deadline, connection) -> bool:
    """May ``connection`` be asked in this request? Says so when not.

    One deadline for the whole action, inside the worker's timeout: the first
    connection is always asked (callers skip this for it); after it, one only if a call can end in time."""
    try:
        deadline.check(1, connection)
    except connections.OutOfTime:
        modeladmin.message_user(request, gettext(
            "%(connection)s: not asked: IPS answered too slowly for every connection to be asked within one "
            "request (%(seconds)s s). Select it again."
        ) % {"connection": connection, "seconds": f"{deadline.seconds:g}"}, messages.WARNING)
        return False
    return True


@admin.action(description=_("Test connection (checkLogin, getUserInfo, getCompanyMembership)"))
def test_connections(modeladmin, request, queryset):
    deadline = connections.Deadline()
    for n, connection in enumerate(queryset):
        if n and not _may_ask(modeladmin, request, deadline, connection):
            continue
        ok, text = connections.check_connection(connection, deadline)
        modeladmin.message_user(request, text, messages.SUCCESS if ok else messages.ERROR)


@admin.action(description=_("Add the service account's companies from IPS"), permissions=["add_companies"])
def add_companies_from_ips(modeladmin, request, queryset):
    deadline = connections.Deadline()
    for n, connection in enumerate(queryset):
        if n and not _may_ask(modeladmin, request, deadline, connection):
            continue
        try:
            added = connections.add_service_account_companies(connection, deadline)
        except ips.IpsError as error:
            text = gettext("%(connection)s: %(error)s") % {"connection": connection, "error": error}
            modeladmin.message_user(request, text, messages.ERROR)
            continue
        names = ", ".join(f"{c.name} ({c.handle})" for c in added)
        if added:
            text = ngettext("%(connection)s: %(count)d company added: %(names)s.",
                            "%(connection)s: %(count)d companies added: %(names)s.", len(added))
        else:
            text = gettext("%(connection)s: 0 companies added.")
        modeladmin.message_user(
            request, text % {"connection": connection, "count": len(added), "names": names}, messages.SUCCESS,
        )


def _sync(modeladmin, request, companies):
    # One deadline over every company, whatever its connection: the request must end in time.
    results = sync.sync_companies(companies.select_related("connection"), connections.Deadline())
    for result in results:
        modeladmin.message_user(request, str(result), messages.ERROR if result.error else messages.SUCCESS)


@admin.action(description=_("Sync jobs from IPS (getScheduledJobs)"), permissions=["change"])
def sync_connection_jobs(modeladmin, request, queryset):
    _sync(modeladmin, request, Company.objects.filter(connection__in=queryset))


@admin.action(description=_("Sync jobs from IPS (getScheduledJobs)"), permissions=["change"])
def sync_company_jobs(modeladmin, request, queryset):
    _sync(modeladmin, request, queryset)


@admin.action(description=_("Sync these jobs' companies from IPS"), permissions=["change"])
def sync_job_companies(modeladmin, request, queryset):
    _sync(modeladmin, request, Company.objects.filter(jobs__in=queryset).distinct())


@admin.register(Connection)
class ConnectionAdmin(RecordsMembershipsOnDelete, ReadableValues, admin.ModelAdmin):
    form = ConnectionForm
    # The form's own URL fields assume https; so do the ones the admin builds from the model first.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["name", "region", "service_url", "api_version", "username", "ips_sign_in", "sync_interval",
                    "has_password", "updated_at"]
    list_filter = ["region", "api_version", "ips_sign_in"]
    search_fields = ["name", "username", "service_url"]
    actions = [test_connections, add_companies_from_ips, sync_connection_jobs]
    membership_source = MembershipChange.Source.COMPANY_DELETED

    def memberships_of(self, objs):
        return Membership.objects.filter(company__connection__in=objs)

    def get_readonly_fields(self, request, obj=None):
        # Sign-in with IPS sends everyone's email and password to the connection's service:
        # only superusers switch it on or off, or move a connection that has it.
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields.append("ips_sign_in")
            if obj is not None and obj.ips_sign_in:
                fields += ["region", "service_url", "wsdl_url"]
        return fields

    def has_add_companies_permission(self, request) -> bool:
        """Add companies creates Company rows: changing connections is not enough."""
        return self.has_change_permission(request) and request.user.has_perm("jobs.add_company")

    @boolean(_("password set"))
    def has_password(self, obj):
        return obj.has_password


class SyncFailingFilter(admin.SimpleListFilter):
    """Companies whose last sync of jobs (getScheduledJobs) failed: the error stays until one succeeds."""

    title = _("sync failing")
    parameter_name = "sync_failing"

    def lookups(self, request, model_admin):
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(sync_error="")
        if self.value() == "no":
            return queryset.filter(sync_error="")
        return queryset


class WatcherFailingFilter(admin.SimpleListFilter):
    """Companies whose watcher's last look at IPS failed (services.watch): runs are not being recorded."""

    title = _("watcher failing")
    parameter_name = "watcher_failing"

    def lookups(self, request, model_admin):
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(watch__isnull=False).exclude(watch__last_error="")
        if self.value() == "no":
            return queryset.filter(Q(watch__isnull=True) | Q(watch__last_error=""))
        return queryset


def _watch(obj) -> CompanyWatch | None:
    try:
        return obj.watch
    except CompanyWatch.DoesNotExist:
        return None


@admin.register(Company)
class CompanyAdmin(RecordsMembershipsOnDelete, MembershipsByServiceMixin, ReadableValues, admin.ModelAdmin):
    """Companies, with how their jobs sync and how their watcher fares: both run in the background
    (manage.py watch_ips), so a failure of either shows here, in the list and on the company."""

    list_display = ["name", "handle", "connection", "last_synced_at", "sync_state", "watcher_state"]
    list_filter = ["connection", SyncFailingFilter, WatcherFailingFilter]
    list_select_related = ["connection", "watch"]
    search_fields = ["name", "handle"]
    inlines = [MembershipInline]
    actions = [sync_company_jobs]
    membership_source = MembershipChange.Source.COMPANY_DELETED
    fieldsets = [
        (None, {"fields": ["connection", "handle", "name"]}),
        (_("Sync of its jobs (getScheduledJobs)"), {"fields": ["last_synced_at", "sync_error", "sync_failed_at"]}),
        (_("Watcher of its runs in IPS"), {"fields": [
            "watch_last_look_at", "watch_last_ok_at", "watch_last_error", "watch_next_look_at", "watch_next_sync_at",
            "watch_lease", "watch_looks",
        ]}),
    ]
    # Written by the sync and the watcher, never typed in.
    readonly_fields = [
        "last_synced_at", "sync_error", "sync_failed_at", "watch_last_look_at", "watch_last_ok_at",
        "watch_last_error", "watch_next_look_at", "watch_next_sync_at", "watch_lease", "watch_looks",
    ]

    def memberships_of(self, objs):
        return Membership.objects.filter(company__in=objs)

    @admin.display(description=_("last sync"))
    def sync_state(self, obj):
        if obj.sync_error:
            # The error is IPS's (or the network's) as recorded: only the words around it are translated.
            return gettext("failed at %(at)s: %(error)s") % {
                "at": _at(obj.sync_failed_at), "error": Truncator(obj.sync_error).chars(120)}
        return gettext("ok") if obj.last_synced_at else gettext("never synced")

    @admin.display(description=_("watcher"))
    def watcher_state(self, obj):
        watch = _watch(obj)
        if watch is None or watch.last_look_at is None:
            return gettext("not looked yet")
        if watch.last_error:
            return gettext("failing: %(error)s (last look %(look)s, last success %(ok)s)") % {
                "error": Truncator(watch.last_error).chars(120), "look": _at(watch.last_look_at),
                "ok": _at(watch.last_ok_at)}
        return gettext("ok (last look %(look)s)") % {"look": _at(watch.last_look_at)}

    @admin.display(description=_("last look at IPS"))
    def watch_last_look_at(self, obj):
        watch = _watch(obj)
        return _at(watch.last_look_at) if watch else "—"

    @admin.display(description=_("last successful look"))
    def watch_last_ok_at(self, obj):
        watch = _watch(obj)
        return _at(watch.last_ok_at) if watch else "—"

    @admin.display(description=_("last look's error"))
    def watch_last_error(self, obj):
        watch = _watch(obj)
        return (watch.last_error or gettext("none")) if watch else "—"

    @admin.display(description=_("next look due"))
    def watch_next_look_at(self, obj):
        watch = _watch(obj)
        return _at(watch.next_look_at) if watch else "—"

    @admin.display(description=_("next sync due"))
    def watch_next_sync_at(self, obj):
        watch = _watch(obj)
        return _at(watch.next_sync_at) if watch else "—"

    @admin.display(description=_("held by"))
    def watch_lease(self, obj):
        watch = _watch(obj)
        if watch is None or not watch.lease_owner or watch.lease_until is None or watch.lease_until < timezone.now():
            return gettext("nobody")
        return gettext("%(owner)s until %(at)s") % {"owner": watch.lease_owner, "at": _at(watch.lease_until)}

    @admin.display(description=_("looks"))
    def watch_looks(self, obj):
        watch = _watch(obj)
        return watch.looks if watch else 0


@admin.register(Job)
class JobAdmin(ReadableValues, admin.ModelAdmin):
    list_display = ["name", "company", "type", "exec_schedule", "next_fire_time", "trigger_state", "missed_grace",
                    "is_gone"]
    list_filter = ["is_gone", "type", "trigger_state", "company"]
    search_fields = ["name", "handle", "description"]
    # expected_fire_at: the fire time the watcher checks next for a missed run (set by sync and the watcher).
    readonly_fields = ["last_synced_at", "gone_at", "expected_fire_at"]
    actions = [sync_job_companies]

    def has_delete_permission(self, request, obj=None):
        # A job missing from IPS is marked gone by a sync, never deleted.
        return False
