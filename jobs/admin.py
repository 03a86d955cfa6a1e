from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from . import services
from .models import Company, Connection, Execution, Job, Membership


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
        fields = ["name", "region", "service_url", "wsdl_url", "api_version", "username"]

    def clean(self):
        cleaned = super().clean()
        if not self.instance.has_password and not cleaned.get("password"):
            self.add_error("password", "A new connection needs the service account's password.")
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("password"):
            self.instance.set_password(self.cleaned_data["password"])
        return super().save(commit)


@admin.action(description="Test connection (checkLogin, getUserInfo)")
def test_connections(modeladmin, request, queryset):
    for connection in queryset:
        ok, text = services.check_connection(connection)
        modeladmin.message_user(request, text, messages.SUCCESS if ok else messages.ERROR)


def _report_sync(modeladmin, request, results):
    for result in results:
        modeladmin.message_user(request, str(result), messages.ERROR if result.error else messages.SUCCESS)


@admin.action(description="Sync jobs from IPS (getScheduledJobs)")
def sync_connection_jobs(modeladmin, request, queryset):
    _report_sync(modeladmin, request, services.sync_companies(Company.objects.filter(connection__in=queryset)))


@admin.action(description="Sync jobs from IPS (getScheduledJobs)")
def sync_company_jobs(modeladmin, request, queryset):
    _report_sync(modeladmin, request, services.sync_companies(queryset.select_related("connection")))


@admin.action(description="Sync these jobs' companies from IPS")
def sync_job_companies(modeladmin, request, queryset):
    companies = Company.objects.filter(jobs__in=queryset).distinct().select_related("connection")
    _report_sync(modeladmin, request, services.sync_companies(companies))


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ["name", "region", "service_url", "api_version", "username", "has_password", "updated_at"]
    list_filter = ["region", "api_version"]
    search_fields = ["name", "username", "service_url"]
    actions = [test_connections, sync_connection_jobs]

    @admin.display(boolean=True, description="password set")
    def has_password(self, obj):
        return obj.has_password


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


class CompanyMembershipInline(MembershipInline):
    autocomplete_fields = ["company"]


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "handle", "connection"]
    list_filter = ["connection"]
    search_fields = ["name", "handle"]
    inlines = [MembershipInline]
    actions = [sync_company_jobs]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "company", "role"]
    list_filter = ["role", "company"]
    search_fields = ["user__username", "company__name", "company__handle"]
    autocomplete_fields = ["user", "company"]


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class IpsUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, CompanyMembershipInline]


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


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    """The audit trail: visible to administrators, changeable by nobody."""

    list_display = [
        "requested_at",
        "job_name",
        "company_handle",
        "username",
        "role",
        "outcome",
        "fault_code",
        "duration_ms",
    ]
    list_filter = ["outcome", "operation", "role", "company", "requested_at"]
    search_fields = ["job_name", "job_handle", "username", "request_id", "fault_reason"]
    date_hierarchy = "requested_at"
    list_select_related = ["company"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
