import logging

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from . import ips
from .services import connections, people, sync
from .history import capped_count
from .models import Company, Connection, Execution, HistoryExport, IpsIdentity, Job, Membership, MembershipChange

log = logging.getLogger(__name__)


class ConnectionForm(forms.ModelForm):
    # Write-only: never rendered back, and left unchanged when blank.
    password = forms.CharField(
        label="Service account password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted. Leave blank to keep the current password.",
    )

    service_url = forms.URLField(
        label="Service URL", required=False, assume_scheme="https", max_length=500,
        help_text=Connection._meta.get_field("service_url").help_text,
    )
    wsdl_url = forms.URLField(
        label="WSDL URL", required=False, assume_scheme="https", max_length=500,
        help_text=Connection._meta.get_field("wsdl_url").help_text,
    )

    class Meta:
        model = Connection
        fields = ["name", "region", "service_url", "wsdl_url", "api_version", "username", "ips_sign_in"]

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
            self.add_error("password", "A new connection needs the service account's password.")
        elif self.instance.pk and not cleaned.get("password") and not self.errors:
            # The addresses and the password are one secret: whoever points the connection
            # elsewhere must know the password, or Test connection would hand it over there.
            # (In clean(), self.instance still holds the stored values.)
            stored = connections.endpoint_origins(
                self.instance.region, self.instance.service_url, self.instance.wsdl_url
            )
            asked = connections.endpoint_origins(
                cleaned.get("region", ""), cleaned.get("service_url", ""), cleaned.get("wsdl_url", "")
            )
            if stored != asked:
                self.add_error("password", (
                    "The service URL, region or WSDL URL now points to another host: enter the service account's "
                    "password again, or the stored one would be sent there."
                ))
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("password"):
            self.instance.set_password(self.cleaned_data["password"])
        return super().save(commit)


def _in_time(modeladmin, request, deadline, connection, asked: bool) -> bool:
    """May ``connection`` be asked in this request? Says so when not.

    One deadline for the whole action, inside the worker's timeout: the first
    connection is always asked; after it, one only if a call can end in time."""
    if not asked or deadline.allows(1, connection):
        return True
    modeladmin.message_user(request, (
        f"{connection}: not asked: IPS answered too slowly for every connection to be asked within one "
        f"request ({deadline.seconds:g} s). Select it again."
    ), messages.WARNING)
    return False


@admin.action(description="Test connection (checkLogin, getUserInfo, getCompanyMembership)")
def test_connections(modeladmin, request, queryset):
    deadline = connections.Deadline()
    for n, connection in enumerate(queryset):
        if not _in_time(modeladmin, request, deadline, connection, n > 0):
            continue
        ok, text = connections.check_connection(connection, deadline)
        modeladmin.message_user(request, text, messages.SUCCESS if ok else messages.ERROR)


@admin.action(description="Add the service account's companies from IPS", permissions=["change"])
def add_companies_from_ips(modeladmin, request, queryset):
    deadline = connections.Deadline()
    for n, connection in enumerate(queryset):
        if not _in_time(modeladmin, request, deadline, connection, n > 0):
            continue
        try:
            added = connections.add_service_account_companies(connection, deadline)
        except ips.IpsError as error:
            modeladmin.message_user(request, f"{connection}: {error}", messages.ERROR)
            continue
        names = ", ".join(f"{c.name} ({c.handle})" for c in added)
        modeladmin.message_user(
            request, f"{connection}: {len(added)} compan{'y' if len(added) == 1 else 'ies'} added{': ' + names if names else ''}.",
            messages.SUCCESS,
        )


def _sync(modeladmin, request, companies):
    # One deadline over every company, whatever its connection: the request must end in time.
    results = sync.sync_companies(companies.select_related("connection"), connections.Deadline())
    for result in results:
        modeladmin.message_user(request, str(result), messages.ERROR if result.error else messages.SUCCESS)


@admin.action(description="Sync jobs from IPS (getScheduledJobs)", permissions=["change"])
def sync_connection_jobs(modeladmin, request, queryset):
    _sync(modeladmin, request, Company.objects.filter(connection__in=queryset))


@admin.action(description="Sync jobs from IPS (getScheduledJobs)", permissions=["change"])
def sync_company_jobs(modeladmin, request, queryset):
    _sync(modeladmin, request, queryset)


@admin.action(description="Sync these jobs' companies from IPS", permissions=["change"])
def sync_job_companies(modeladmin, request, queryset):
    _sync(modeladmin, request, Company.objects.filter(jobs__in=queryset).distinct())


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record: every field shown, nobody adds, changes or deletes one, superusers included."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ["name", "region", "service_url", "api_version", "username", "ips_sign_in", "has_password", "updated_at"]
    list_filter = ["region", "api_version", "ips_sign_in"]
    search_fields = ["name", "username", "service_url"]
    actions = [test_connections, add_companies_from_ips, sync_connection_jobs]

    @admin.display(boolean=True, description="password set")
    def has_password(self, obj):
        return obj.has_password


def may_grant_roles(user) -> bool:
    """Superusers, and holders of jobs.grant_ips_roles: Django's membership permissions are not enough."""
    return user.is_active and (user.is_superuser or user.has_perm("jobs.grant_ips_roles"))


class _GrantsRoles:
    """Admin rights over memberships: only who may grant IPS user types, and never on their own."""

    def has_add_permission(self, request, obj=None):
        return may_grant_roles(request.user) and not self._is_own(request, obj)

    def has_change_permission(self, request, obj=None):
        return may_grant_roles(request.user) and not self._is_own(request, obj)

    def has_delete_permission(self, request, obj=None):
        return may_grant_roles(request.user) and not self._is_own(request, obj)

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff and (
            may_grant_roles(request.user) or super().has_view_permission(request, obj)
        )

    @staticmethod
    def _is_own(request, obj) -> bool:
        """A membership of one's own, or (inline on the user page) one's own user."""
        if isinstance(obj, Membership):
            return obj.user_id == request.user.pk
        if isinstance(obj, get_user_model()):
            return obj.pk == request.user.pk
        return False


class MembershipInlineFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        for form in self.forms:
            data = getattr(form, "cleaned_data", {})
            user_id = data["user"].pk if data.get("user") else form.instance.user_id
            touched = form.has_changed() or data.get("DELETE")
            if touched and user_id == self.request_user.pk:
                raise forms.ValidationError("Nobody changes their own IPS user type: ask another administrator.")


class MembershipInline(_GrantsRoles, admin.TabularInline):
    model = Membership
    formset = MembershipInlineFormSet
    extra = 1
    autocomplete_fields = ["user"]
    fields = ["user", "company", "role", "from_ips", "read_at"]
    readonly_fields = ["from_ips", "read_at"]

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.request_user = request.user
        return formset


class CompanyMembershipInline(MembershipInline):
    autocomplete_fields = ["company"]


def _save_membership_formset(request, formset) -> None:
    """Every membership change of an inline goes through people.change_membership (recorded)."""
    for obj in formset.save(commit=False):
        people.change_membership(request.user, obj.user, obj.company, obj.role, MembershipChange.Source.ADMIN)
    for obj in formset.deleted_objects:
        people.change_membership(request.user, obj.user, obj.company, None, MembershipChange.Source.ADMIN)


class MembershipsByServiceMixin:
    def save_formset(self, request, form, formset, change):
        if formset.model is Membership:
            _save_membership_formset(request, formset)
        else:
            super().save_formset(request, form, formset, change)


@admin.register(Company)
class CompanyAdmin(MembershipsByServiceMixin, admin.ModelAdmin):
    list_display = ["name", "handle", "connection"]
    list_filter = ["connection"]
    search_fields = ["name", "handle"]
    inlines = [MembershipInline]
    actions = [sync_company_jobs]


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["user", "company", "role"]

    def clean_user(self):
        user = self.cleaned_data["user"]
        if user.pk == self.request_user.pk:
            raise forms.ValidationError("Nobody changes their own IPS user type: ask another administrator.")
        return user


@admin.register(Membership)
class MembershipAdmin(_GrantsRoles, admin.ModelAdmin):
    form = MembershipForm
    list_display = ["user", "company", "role", "origin", "read_at"]
    list_filter = ["role", "from_ips", "company"]

    @admin.display(description="from", ordering="from_ips")
    def origin(self, obj):
        return "IPS" if obj.from_ips else "manual"
    search_fields = ["user__username", "company__name", "company__handle"]
    autocomplete_fields = ["user", "company"]

    def get_readonly_fields(self, request, obj=None):
        # A membership is one user in one company: to move it, remove it and add another.
        return ["user", "company"] if obj is not None else []

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.request_user = request.user
        return form

    def save_model(self, request, obj, form, change):
        people.change_membership(request.user, obj.user, obj.company, obj.role, MembershipChange.Source.ADMIN)
        obj.pk = Membership.objects.get(user=obj.user, company=obj.company).pk

    def delete_model(self, request, obj):
        people.change_membership(request.user, obj.user, obj.company, None, MembershipChange.Source.ADMIN)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("user", "company"):
            if obj.user_id == request.user.pk:
                raise PermissionDenied("Nobody changes their own IPS user type.")
            self.delete_model(request, obj)


@admin.register(IpsIdentity)
class IpsIdentityAdmin(ReadOnlyAdmin):
    """Who signs in with IPS: read from IPS, changed only by it."""

    list_display = ["email", "user", "connection", "default_role", "password_expires", "read_at"]
    list_filter = ["connection", "default_role"]
    search_fields = ["email", "user__username"]
    list_select_related = ["user", "connection"]

    def has_delete_permission(self, request, obj=None):
        # Deleting its user ends it; an administrator may also end it here.
        return super(ReadOnlyAdmin, self).has_delete_permission(request, obj)


@admin.register(MembershipChange)
class MembershipChangeAdmin(ReadOnlyAdmin):
    """The record of membership changes: visible to administrators, changeable by nobody."""

    list_display = ["at", "username", "company_handle", "role_before", "role_after", "source", "actor_name"]
    list_filter = ["source", "company"]
    search_fields = ["username", "actor_name", "company_handle"]
    list_select_related = ["company"]



User = get_user_model()
admin.site.unregister(User)


#: What makes an account more than its memberships: only superusers give it, never to themselves.
PRIVILEGE_FIELDS = ["is_superuser", "is_staff", "groups", "user_permissions"]


def _privileges(user) -> dict:
    return {
        "is_superuser": user.is_superuser,
        "is_staff": user.is_staff,
        "is_active": user.is_active,
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "user_permissions": sorted(
            f"{app}.{codename}"
            for app, codename in user.user_permissions.values_list("content_type__app_label", "codename")
        ),
    }


@admin.register(User)
class IpsUserAdmin(MembershipsByServiceMixin, UserAdmin):
    """Accounts. Holding the user permissions is not holding every permission: privileges
    (superuser, staff, groups, permissions) are a superuser's to give, never one's own, and
    a privileged account is administered by superusers only (its password included)."""

    inlines = [*UserAdmin.inlines, CompanyMembershipInline]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and (not request.user.is_superuser or obj.pk == request.user.pk):
            fields += [f for f in PRIVILEGE_FIELDS if f not in fields]
        return fields

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._may_administer(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._may_administer(request, obj)

    @staticmethod
    def _may_administer(request, obj) -> bool:
        if obj is None or request.user.is_superuser or obj.pk == request.user.pk:
            return True
        return not (obj.is_superuser or obj.is_staff)

    def save_model(self, request, obj, form, change):
        stored = type(obj).objects.filter(pk=obj.pk).first() if change else None
        request._privileges_before = _privileges(stored) if stored is not None else None
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Groups and permissions are saved here, after the user: compare once all is saved.
        user = form.instance
        before = getattr(request, "_privileges_before", None) or {
            "is_superuser": False, "is_staff": False, "is_active": True, "groups": [], "user_permissions": [],
        }
        after = _privileges(user)
        changed = [f"{k}: {before[k]!r} → {v!r}" for k, v in after.items() if before[k] != v]
        if changed:
            log.warning(
                "%s changed the privileges of %s: %s",
                request.user.get_username(), user.get_username(), "; ".join(changed),
            )


admin.site.unregister(Group)


@admin.register(Group)
class SuperusersGroupAdmin(GroupAdmin):
    """A group carries permissions to its members: who could change one could give themselves anything."""

    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["name", "company", "type", "exec_schedule", "next_fire_time", "trigger_state", "is_gone"]
    list_filter = ["is_gone", "type", "trigger_state", "company"]
    search_fields = ["name", "handle", "description"]
    readonly_fields = ["last_synced_at", "gone_at"]
    actions = [sync_job_companies]

    def has_delete_permission(self, request, obj=None):
        # A job missing from IPS is marked gone by a sync, never deleted.
        return False


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows: counting a million audit rows takes a database
    most of a second, for a number nobody pages through. The pages past the cap
    are reached by filters (admin/jobs/execution/pagination.html says so)."""

    cap = 10_000

    @cached_property
    def count(self):
        count, self.capped = capped_count(self.object_list, self.cap)
        return count


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    """The audit trail: visible to administrators, changeable by nobody.

    Fast at a million rows: no full count (CappedCountPaginator, no second
    count), filters whose choices are fixed (no SELECT DISTINCT over the table)
    and served by an index, no date hierarchy (a DISTINCT over every row),
    search only where an index answers, sorting only by time."""

    list_display = [
        "requested_at",
        "job_name",
        "company_label",
        "username",
        "role",
        "operation",
        "outcome",
        "ips_result",
        "fault_code",
        "duration_ms",
    ]
    list_filter = ["outcome", "ips_result", "company", ("requested_at", admin.DateFieldListFilter)]
    # The box is shown for any search field; get_search_results decides what is searched.
    search_fields = ["request_id"]
    search_help_text = "A request id (whole), a user name (whole, any case), or part of a job's name."
    list_select_related = ["company"]
    sortable_by = ["requested_at"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    @admin.display(description="company", ordering="company_handle")
    def company_label(self, obj):
        return f"{obj.company.name} ({obj.company_handle})" if obj.company else obj.company_handle

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        # One index per search, so that the page is read in its order: a request
        # id, else a user name (whole, any case), else the jobs whose name has the
        # term (their keys from the small job table). An OR of the three would
        # make the database fetch every match and sort them.
        if Execution.objects.filter(request_id=term).exists():
            return queryset.filter(request_id=term), False
        if Execution.objects.by_usernames([term]).exists():
            return queryset.by_usernames([term]), False
        jobs = list(Job.objects.filter(name__icontains=term).values_list("pk", flat=True)[:100])
        return queryset.filter(job_id__in=jobs), False



@admin.register(HistoryExport)
class HistoryExportAdmin(ReadOnlyAdmin):
    """Who exported which history, and how much of it: visible to administrators, changeable by nobody."""

    list_display = ["at", "username", "filters", "row_count", "completed", "finished_at", "request_id"]
    list_filter = ["completed", ("at", admin.DateFieldListFilter)]
    search_fields = ["username", "=request_id"]

