"""The models of jobs/, one module per subject; every public name is importable from here."""

from .append_only import CLOCK_SKEW, AppendOnly, AppendOnlyQuerySet, Rules
from .background import Chore, CompanyWatch, RunFollow
from .catalogue import Job, JobQuerySet, MissedRun
from .connections import Company, CompanyQuerySet, Connection
from .executions import (
    FAILED_IPS_RESULTS,
    FAILED_OUTCOMES,
    FAILED_RUN,
    FOLLOW_FOR,
    IPS_CALLS_PER_RUN,
    Execution,
    ExecutionQuerySet,
    allow_pruning,
)
from .exports import ExportFile, HistoryExport, HistoryExportQuerySet
from .notifications import DeliveryAttempt, Notification, Subscription
from .people import IpsIdentity, Membership, MembershipChange, Profile

__all__ = [
    "AppendOnly",
    "AppendOnlyQuerySet",
    "CLOCK_SKEW",
    "Chore",
    "Company",
    "CompanyWatch",
    "CompanyQuerySet",
    "Connection",
    "DeliveryAttempt",
    "Execution",
    "ExecutionQuerySet",
    "ExportFile",
    "FAILED_IPS_RESULTS",
    "FAILED_OUTCOMES",
    "FAILED_RUN",
    "FOLLOW_FOR",
    "HistoryExport",
    "HistoryExportQuerySet",
    "IPS_CALLS_PER_RUN",
    "IpsIdentity",
    "Job",
    "JobQuerySet",
    "Membership",
    "MissedRun",
    "MembershipChange",
    "Notification",
    "Profile",
    "RunFollow",
    "Subscription",
    "Rules",
    "allow_pruning",
]
