"""The dashboard's pages, one module per page family; jobs/urls.py routes to them.

``csrf_failure`` is here for settings.CSRF_FAILURE_VIEW."""

from .common import csrf_failure

__all__ = ["csrf_failure"]
