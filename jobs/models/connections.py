"""IPS connections and the companies reached through them."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .. import crypto, ipsversions
from ..roles import Access, UserType
from .people import Membership

#: Company.access(): the membership was not read with the company.
UNREAD = object()


class Connection(models.Model):
    """An IPS endpoint and the service account the dashboard calls it as."""

    class Region(models.TextChoices):
        CUSTOM = "custom", _("Custom service URL (emulator, proxy)")
        NA = "na", _("North America")
        NA_STAGING = "na-staging", _("North America (staging)")
        EMEA = "emea", _("Europe, Middle East, Asia")
        EMEA_STAGING = "emea-staging", _("Europe, Middle East, Asia (staging)")
        APAC = "apac", _("Japan / Asia Pacific")
        APAC_STAGING = "apac-staging", _("Japan / Asia Pacific (staging)")

    name = models.CharField(_("name"), max_length=100, unique=True)
    region = models.CharField(_("region"), max_length=20, choices=Region.choices, default=Region.CUSTOM)
    service_url = models.URLField(_("service URL"),
        blank=True,
        max_length=500,
        help_text=_("IpsApiService address. Required for a custom region; overrides the region's host otherwise."),
    )
    wsdl_url = models.URLField(
        _("WSDL URL"),
        blank=True,
        max_length=500,
        help_text=_("Leave empty to use the WSDL bundled with ipsadmin for the API version."),
    )
    api_version = models.CharField(
        _("API version"),
        max_length=20,
        # The unversioned namespace's label in the page's language (ipsversions is read outside Django too).
        choices=[(v.key, v.label if v.key else format_lazy("{} ({})", v.release, _("unversioned")))
                 for v in ipsversions.VERSIONS],
        blank=True,
        default=ipsversions.DEFAULT_VERSION,
        help_text=_("The IPS API namespace to speak; replies are read in that version's shapes."),
    )
    username = models.CharField(
        _("service account email"),
        max_length=254,
        help_text=_("The IPS user the dashboard calls as. Its IPS type must be IpsUser or IpsAdmin."),
    )
    password_encrypted = models.TextField(_("password encrypted"), editable=False, blank=True)
    ips_sign_in = models.BooleanField(
        _("sign in with IPS"),
        default=False,
        help_text=_("People log in with their IPS email and password; their companies and user types are read "
        "from IPS (checkLogin, getUserInfo, getCompanyMembership). Passwords are never stored."),
    )
    sync_interval = models.DurationField(
        _("sync every"),
        default=dt.timedelta(minutes=15),
        validators=[MinValueValidator(dt.timedelta(seconds=10))],
        help_text=_("How often the background watcher reads each company's jobs from IPS (getScheduledJobs), "
        "as HH:MM:SS."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("connection")
        verbose_name_plural = _("connections")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"<Connection {self.pk} {self.name!r}>"

    def clean(self):
        if self.region == self.Region.CUSTOM and not self.service_url:
            raise ValidationError({"service_url": "A custom connection needs a service URL."})

    def set_password(self, raw: str) -> None:
        self.password_encrypted = crypto.encrypt(raw)

    def get_password(self) -> str:
        return crypto.decrypt(self.password_encrypted) if self.password_encrypted else ""

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def resolved_service_url(self) -> str:
        if self.service_url:
            return self.service_url
        return ipsversions.region_service_url(self.region)


class CompanyQuerySet(models.QuerySet):
    def accesses_for(self, user, operation: str) -> dict[int, Access]:
        """{company id: Access} for every company the user has a role in (one query)."""
        if not user.is_authenticated or not user.is_active:
            return {}
        if user.is_superuser:
            return {pk: Access(UserType.IPS_ADMIN, operation, handle) for pk, handle in self.values_list("pk", "handle")}
        rows = Membership.objects.filter(user=user, company__in=self).values_list(
            "company_id", "company__handle", "role", "from_ips", "read_at"
        )
        return {pk: Access(role, operation, handle, from_ips, read_at) for pk, handle, role, from_ips, read_at in rows}


class Company(models.Model):
    connection = models.ForeignKey(
        Connection, verbose_name=_("connection"), on_delete=models.PROTECT, related_name="companies",
    )
    handle = models.CharField(_("handle"), max_length=255, help_text=_("The IPS company handle, e.g. 47."))
    name = models.CharField(_("name"), max_length=255)
    last_synced_at = models.DateTimeField(
        _("last synced"), null=True, blank=True, help_text=_("When its jobs were last read from IPS.")
    )
    sync_error = models.TextField(
        _("sync error"), blank=True, help_text=_("Why the last sync failed; empty once one succeeds."),
    )
    sync_failed_at = models.DateTimeField(_("sync failed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("company")
        verbose_name_plural = _("companies")
        ordering = ["name", "handle"]
        constraints = [
            # Sync and demo data look companies up by (connection, handle).
            models.UniqueConstraint(fields=["connection", "handle"], name="company_unique_handle"),
        ]

    objects = CompanyQuerySet.as_manager()

    def __str__(self):
        return f"{self.name} ({self.handle})"

    def role_of(self, user) -> str | None:
        """The user's IPS user type here, read fresh on every request (see access)."""
        return self.access(user, "getScheduledJobs").role

    def access(self, user, operation: str, row=UNREAD) -> Access:
        """What ``user`` may do here: their role, and whether it was read from IPS (and when).

        ``row``: the user's membership here as (role, from_ips, read_at), or None for none, when
        the caller read it with the company (views.common.with_membership_of); else it is read.

        A Django superuser acts as IpsAdmin everywhere; nobody else has implicit
        rights, and inactive or anonymous users have none."""
        if not user.is_authenticated or not user.is_active:
            return Access(None, operation, self.handle)
        if user.is_superuser:
            return Access(UserType.IPS_ADMIN, operation, self.handle)
        if row is UNREAD:
            row = self.memberships.filter(user=user).values_list("role", "from_ips", "read_at").first()
        if row is None:
            return Access(None, operation, self.handle)
        role, from_ips, read_at = row
        return Access(role, operation, self.handle, from_ips=from_ips, read_at=read_at)
