"""Dashboard users: their IPS user types per company, IPS identities, the record of changes, settings."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..roles import UserType
from .append_only import AppendOnly, Rules, set_null_by_database

# Companies and connections by name ("jobs.Company"): .connections imports
# this module, its CompanyQuerySet reads Membership.


class Membership(models.Model):
    """A dashboard user's IPS user type in one company."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="memberships",
    )
    company = models.ForeignKey(
        "jobs.Company", verbose_name=_("company"), on_delete=models.CASCADE, related_name="memberships",
    )
    role = models.CharField(_("IPS user type"), max_length=30, choices=UserType.choices)
    # Where the user type comes from: typed in the admin, or read from IPS
    # (sign-in, refresh), when. One read longer ago than
    # IPS_MEMBERSHIP_MAX_AGE no longer lets its holder act (roles.Access).
    from_ips = models.BooleanField(_("read from IPS"), default=False)
    read_at = models.DateTimeField(_("read from IPS at"), null=True, blank=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        ordering = ["company", "user"]
        constraints = [
            # One role per user and company; also serves role_of(user, company).
            models.UniqueConstraint(fields=["user", "company"], name="membership_unique_user_company"),
        ]
        permissions = [
            # Django's add/change/delete_membership alone are not enough: giving
            # IPS rights is its own permission (jobs/admin.py), and never to oneself.
            ("grant_ips_roles", "Can give other users IPS user types in companies"),
        ]

    def __str__(self):
        return f"{self.user} is {self.role} in {self.company}"


class IpsIdentity(models.Model):
    """A Django user who signs in with IPS: who they are there. No password is kept."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="ips_identity",
    )
    connection = models.ForeignKey(
        "jobs.Connection", verbose_name=_("connection"), on_delete=models.CASCADE, related_name="identities",
    )
    email = models.EmailField(_("IPS email"), max_length=254)
    user_handle = models.CharField(_("IPS user handle"), max_length=255, blank=True)
    default_role = models.CharField(_("IPS default user type"), max_length=30, blank=True)
    password_expires = models.DateTimeField(_("password expires"), null=True, blank=True)
    read_at = models.DateTimeField(_("read from IPS at"))

    class Meta:
        verbose_name = _("IPS identity")
        verbose_name_plural = _("IPS identities")
        constraints = [
            # Sign-in finds the person by (connection, email).
            models.UniqueConstraint(fields=["connection", "email"], name="ipsidentity_unique_email"),
        ]

    def __str__(self):
        return f"{self.email} on {self.connection}"


class MembershipChange(AppendOnly):
    """Who gave whom which IPS user type where, and when: every membership change.

    Snapshots keep the names, so deleting a user or a company keeps the
    record. Rows are only ever added (services.people.change_membership, and
    the deletion of a user or a company: below), never changed nor deleted."""

    class Source(models.TextChoices):
        ADMIN = "admin", _("Django admin")
        DEMO = "demo", _("demo data (load_demo)")
        IPS_SIGN_IN = "ips_sign_in", _("sign-in with IPS")
        IPS_REFRESH = "ips_refresh", _("refresh from IPS")
        USER_DELETED = "user_deleted", _("user deleted")
        COMPANY_DELETED = "company_deleted", _("company deleted")

    RULES = Rules(kind="a record", row="membership change", born_as="a new change", clock=("at",))

    at = models.DateTimeField(_("at"), default=timezone.now)
    source = models.CharField(_("source"), max_length=20, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True, blank=True, on_delete=set_null_by_database, related_name="+"
    )
    actor_name = models.CharField(_("changed by"), max_length=150, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True, on_delete=set_null_by_database, related_name="membership_changes"
    )
    username = models.CharField(_("username"), max_length=150)
    company = models.ForeignKey(
        "jobs.Company",
        verbose_name=_("company"),
        null=True, on_delete=set_null_by_database, related_name="membership_changes",
    )
    company_handle = models.CharField(_("company handle"), max_length=255)
    role_before = models.CharField(_("IPS user type before"), max_length=30, blank=True)
    role_after = models.CharField(_("IPS user type after"), max_length=30, blank=True)

    class Meta(AppendOnly.Meta):
        verbose_name = _("membership change")
        verbose_name_plural = _("membership changes")
        ordering = ["-at", "-id"]
        indexes = [
            # The admin's list of one user's changes, newest first.
            models.Index(fields=["user", "-at"], name="membershipchange_user_recent"),
            # The admin's list of changes newest first.
            models.Index(fields=["-at"], name="membershipchange_recent"),
        ]

    def __str__(self):
        return (
            f"{self.username} in {self.company_handle}: {self.role_before or 'none'} → "
            f"{self.role_after or 'none'} ({self.get_source_display()}, {self.actor_name or 'system'})"
        )



@receiver(pre_delete, sender=Membership, dispatch_uid="jobs.membership_deleted_with_its_user_or_company")
def record_membership_deleted_with_its_user_or_company(sender, instance, origin=None, **kwargs):
    """A membership deleted with its user (or its company, or the company's connection) is a change like any other.

    services.people.change_membership deletes one membership itself and records it:
    a deletion whose origin is a membership (or memberships) is its caller's to record."""
    origin_model = origin.model if isinstance(origin, models.QuerySet) else type(origin)
    if origin is None or issubclass(origin_model, Membership):
        return
    user_deleted = origin_model._meta.label == settings.AUTH_USER_MODEL
    MembershipChange.objects.create(
        source=MembershipChange.Source.USER_DELETED if user_deleted else MembershipChange.Source.COMPANY_DELETED,
        user_id=instance.user_id,
        username=instance.user.get_username(),
        company_id=instance.company_id,
        company_handle=instance.company.handle,
        role_before=instance.role,
        role_after="",
    )


class Profile(models.Model):
    """A dashboard user's own settings."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        primary_key=True, on_delete=models.CASCADE, related_name="profile",
    )
    time_zone = models.CharField(_("time zone"),
        max_length=64,
        blank=True,
        help_text=_("The zone every time is shown in. Empty: the browser's (jobs.timezones)."),
    )
    # Notifications are written in it (services.notify); empty: settings.LANGUAGE_CODE.
    language = models.CharField(_("language"), max_length=10, blank=True, choices=settings.LANGUAGES)

    class Meta:
        verbose_name = _("profile")
        verbose_name_plural = _("profiles")

    def __str__(self):
        return f"settings of {self.user}"
