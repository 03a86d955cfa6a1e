"""Notifications: subscriptions (managed by administrators too), and the delivery log (read-only)."""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .. import crypto
from ..models import DeliveryAttempt, Notification, Subscription
from ..services import notify
from .people import may_grant_roles
from .records import ReadOnlyAdmin
from .values import ReadableValues, at, boolean


class SubscriptionAdminForm(forms.ModelForm):
    """The address and the signing secret are write-only: never shown, replaced when typed."""

    new_url = forms.URLField(
        label=_("New address"), required=False, max_length=2000, assume_scheme="https",
        widget=forms.TextInput(attrs={"autocomplete": "off", "size": 60}),
        help_text=_("For a webhook, Slack or Teams. Stored encrypted, never shown; empty keeps the one stored."),
    )
    new_secret = forms.CharField(
        label=_("New signing secret"), required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("A signed webhook's whsec_… secret, as its receiver knows it. Stored encrypted, never shown; "
                    "empty keeps the one stored. Users get one made for them on their settings page."),
    )

    #: Set by SubscriptionAdmin.get_form: who is editing, and whether they may manage other people's
    #: subscriptions (may_grant_roles: who decides where someone's notifications go decides what they learn).
    acting_user = None
    for_others = False

    class Meta:
        model = Subscription
        fields = ["user", "scope", "company", "job", "on_fatal", "on_errors", "on_warnings", "on_finish",
                  "on_not_through", "on_missed", "channel", "paused"]

    def clean_new_url(self):
        url = self.cleaned_data["new_url"]
        if url and not url.lower().startswith(("https://", "http://")):
            raise ValidationError(_("Only http and https addresses can be used."))
        return url

    def clean_new_secret(self):
        secret = self.cleaned_data["new_secret"]
        if secret and not secret.startswith("whsec_"):
            raise ValidationError(_("A Standard Webhooks secret starts with whsec_."))
        return secret

    def clean(self):
        data = super().clean()
        if not self.for_others:
            data["user"] = self.instance.user = self.acting_user  # their own, whatever was posted
        scope, user = data.get("scope"), data.get("user")
        company = data.get("company") if scope == Subscription.Scope.COMPANY else None
        job = data.get("job") if scope == Subscription.Scope.JOB else None
        if scope == Subscription.Scope.COMPANY and company is None:
            self.add_error("company", _("Choose the company."))
        if scope == Subscription.Scope.JOB and job is None:
            self.add_error("job", _("Choose the job."))
        if scope == Subscription.Scope.JOB:
            data["company"] = None
        if scope == Subscription.Scope.MINE:
            data["company"] = data["job"] = None
        target = company or (job.company if job else None)
        # The same rule as at send time: the subscriber must be allowed to read the company's job logs.
        if user is not None and target is not None and not notify.may_hear(user, target):
            raise ValidationError(_("%(user)s may not read the job history of company %(company)s (getJobLogs)."),
                                  params={"user": user, "company": target.handle})
        channel = data.get("channel")
        if channel in Subscription.URL_CHANNELS and not data.get("new_url") and not self.instance.target_encrypted:
            self.add_error("new_url", _("This channel needs an address."))
        if (channel == Subscription.Channel.WEBHOOK and not data.get("new_secret")
                and not self.instance.secret_encrypted):
            self.add_error("new_secret", _("A signed webhook needs its secret."))
        return data

    def save(self, commit=True):
        subscription = super().save(commit=False)
        if not self.for_others:
            subscription.user = self.acting_user
        subscription.company = self.cleaned_data.get("company")
        subscription.job = self.cleaned_data.get("job")
        if self.cleaned_data.get("new_url"):
            subscription.set_target(self.cleaned_data["new_url"])
        if self.cleaned_data.get("new_secret"):
            subscription.secret_encrypted = crypto.encrypt(self.cleaned_data["new_secret"])
        if subscription.channel == Subscription.Channel.EMAIL:
            subscription.target_encrypted = subscription.target_hint = subscription.secret_encrypted = ""
        if commit:
            subscription.save()
        return subscription


@admin.register(Subscription)
class SubscriptionAdmin(ReadableValues, admin.ModelAdmin):
    form = SubscriptionAdminForm
    list_display = ["user", "scope", "company", "job", "channel", "target_hint", "paused", "works", "created_at"]
    list_filter = ["channel", "scope", "paused"]
    list_select_related = ["user", "company", "job__company"]
    raw_id_fields = ["user", "job"]
    search_fields = ["user__username", "user__email"]
    readonly_fields = ["target_hint", "created_at"]

    def get_queryset(self, request):
        # Staff who may not grant roles see, and so change, only their own.
        queryset = super().get_queryset(request)
        return queryset if may_grant_roles(request.user) else queryset.filter(user=request.user)

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return fields if may_grant_roles(request.user) else [*fields, "user"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.acting_user, form.for_others = request.user, may_grant_roles(request.user)
        return form

    @boolean(_("sends"))
    def works(self, obj):
        """False when its owner's role no longer lets them read the company's job logs: it sends nothing."""
        return notify.subscription_works(obj)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ["at_shown", "ok_shown", "status_code", "error"]

    @admin.display(description=_("at"))
    def at_shown(self, obj):
        return at(obj.at)

    @boolean(_("ok"))
    def ok_shown(self, obj):
        return obj.ok

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """The delivery log: each event told to each subscription, its state and every try. Read-only."""

    list_display = ["created_at", "kind", "event_id", "recipient", "channel", "subscription", "what", "state",
                    "attempts", "sent_at", "last_error"]
    list_filter = ["state", "kind"]
    list_select_related = ["subscription__user", "subscription__company", "subscription__job__company"]
    inlines = [DeliveryAttemptInline]


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = ["at", "notification", "ok", "status_code", "error"]
    list_filter = ["ok"]
    list_select_related = ["notification"]
