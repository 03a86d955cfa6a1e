"""The Django admin, by subject; importing the package registers every model admin (autodiscovery)."""

from . import connections, lockouts, notifications, people, records, tasks  # noqa: F401  (each registers its admins)
from .people import may_grant_roles  # noqa: F401
from .records import CappedCountPaginator  # noqa: F401
