"""IPS user types and which of them each IPS operation authorizes.

The table is copied from the "Authorized user types" sections of the IPS API
reference (AdobeDocs dynamic-media-developer-resources, help/aem-ips-api/operations/,
one page per operation). Every permission of the dashboard is one of
these operations, checked in the job's company: the dashboard mirrors IPS.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _


class UserType(models.TextChoices):
    IPS_ADMIN = "IpsAdmin"
    IPS_COMPANY_ADMIN = "IpsCompanyAdmin"
    IPS_USER = "IpsUser"
    WEB_SERVICE_USER = "WebServiceUser"
    TRIAL_SITE_ADMIN = "TrialSiteAdmin"
    TRIAL_SITE_USER = "TrialSiteUser"
    IMAGE_PORTAL_ADMIN = "ImagePortalAdmin"
    IMAGE_PORTAL_USER = "ImagePortalUser"
    IMAGE_PORTAL_CONTRIB = "ImagePortalContrib"
    IMAGE_PORTAL_CONTRIB_USER = "ImagePortalContribUser"


_ALL_BUT_WEB_SERVICE = frozenset(UserType) - {UserType.WEB_SERVICE_USER}
_JOB_CONTROL = _ALL_BUT_WEB_SERVICE - {UserType.IMAGE_PORTAL_USER}
_RUN = _JOB_CONTROL - {UserType.IPS_COMPANY_ADMIN}

AUTHORIZED: dict[str, frozenset[str]] = {
    "executeJob": _RUN,
    "submitJob": _RUN,
    "getScheduledJobs": _JOB_CONTROL,
    "getActiveJobs": _JOB_CONTROL,
    "pauseJob": _JOB_CONTROL,
    "resumeJob": _JOB_CONTROL,
    "stopJob": _JOB_CONTROL,
    "deleteJob": _JOB_CONTROL,
    "getJobLogs": _ALL_BUT_WEB_SERVICE,
    # The reference leaves TrialSiteAdmin out of getJobLogDetails.
    "getJobLogDetails": _ALL_BUT_WEB_SERVICE - {UserType.TRIAL_SITE_ADMIN},
    "checkLogin": _ALL_BUT_WEB_SERVICE,
    "getUserInfo": _ALL_BUT_WEB_SERVICE,
    "getCompanyMembership": _ALL_BUT_WEB_SERVICE,
    "getCompanyInfo": _ALL_BUT_WEB_SERVICE - {UserType.IPS_COMPANY_ADMIN},
}

#: What a dashboard action means in IPS terms, for messages (lazy: said in the message's language).
ACTION_WORDS = {
    "executeJob": _("run jobs"),
    "getScheduledJobs": _("list jobs"),
    "getActiveJobs": _("see active jobs"),
    "getJobLogs": _("see job history"),
    "getJobLogDetails": _("see job log details"),
    "pauseJob": _("pause jobs"),
    "resumeJob": _("resume jobs"),
    "stopJob": _("stop jobs"),
    "deleteJob": _("delete jobs"),
}


def is_authorized(role: str | None, operation: str) -> bool:
    """May an IPS user of type ``role`` perform ``operation``?"""
    return role is not None and role in AUTHORIZED[operation]


def refusal_reason(role: str | None, operation: str, company_label: str) -> Promise:
    """Plain words for why ``role`` may not perform ``operation``: lazy, read in the language it is shown in."""
    action = ACTION_WORDS.get(operation, operation)
    if role is None:
        return format_lazy(
            _("You have no role in company {company}, so you cannot {action} ({operation})."),
            company=company_label, action=action, operation=operation,
        )
    return format_lazy(
        _("Your role {role} in company {company} cannot {action} ({operation})."),
        role=role, company=company_label, action=action, operation=operation,
    )


#: Operations that act on IPS (not just read): a role read from IPS too long
#: ago no longer allows them (IPS_MEMBERSHIP_MAX_AGE).
ACTING = frozenset({"executeJob", "submitJob", "stopJob", "pauseJob", "resumeJob", "deleteJob"})


@dataclass(frozen=True)
class Access:
    """What one user may do in one company, for one IPS operation.

    Every dashboard action asks for one of these (views' ``_get_x_for_user``
    helpers) and answers from it: hidden when the user has no role there,
    refused with ``reason`` when the role is not authorized, or when it was
    read from IPS too long ago to act on.
    """

    role: str | None
    operation: str
    company_label: str
    #: The role was read from IPS (sign-in with IPS), at ``read_at``.
    from_ips: bool = False
    read_at: dt.datetime | None = None

    @property
    def visible(self) -> bool:
        """The company (and so its jobs) exists for this user at all."""
        return self.role is not None

    @property
    def stale(self) -> bool:
        """Read from IPS longer ago than IPS_MEMBERSHIP_MAX_AGE: IPS may have changed it since."""
        if not self.from_ips:
            return False
        return self.read_at is None or timezone.now() - self.read_at > settings.IPS_MEMBERSHIP_MAX_AGE

    @property
    def allowed(self) -> bool:
        return is_authorized(self.role, self.operation) and not (self.operation in ACTING and self.stale)

    @property
    def reason(self) -> Promise:
        """Why not, lazy: shown in the request's language, stored (services.press.finish) in English."""
        if is_authorized(self.role, self.operation) and self.stale:
            if self.read_at is None:
                return format_lazy(
                    _(
                        "Your IPS user type in company {company} was last read from IPS long ago: "
                        "sign in again so that IPS can confirm it before you act on jobs."
                    ),
                    company=self.company_label,
                )
            return format_lazy(
                _(
                    "Your IPS user type in company {company} was last read from IPS at {time}: "
                    "sign in again so that IPS can confirm it before you act on jobs."
                ),
                company=self.company_label, time=f"{timezone.localtime(self.read_at):%Y-%m-%d %H:%M}",
            )
        return refusal_reason(self.role, self.operation, self.company_label)

    def to(self, operation: str) -> Access:
        """The same user and company, asking for another operation."""
        return dataclasses.replace(self, operation=operation)


def may(user, operation: str, company) -> bool:
    """May ``user`` perform the IPS ``operation`` in ``company``?"""
    return is_authorized(company.role_of(user), operation)
