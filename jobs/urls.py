from django.urls import path

from .services.actions import ACTIONS
from .views import exports, health, history, jobs, preferences, runs

app_name = "jobs"
urlpatterns = [
    path("", jobs.job_list, name="list"),
    path("jobs/<int:pk>/status", jobs.job_status, name="status"),
    # Each job action by its own name (jobs:run, jobs:stop), and any row of the table by jobs:press.
    *(path(f"jobs/<int:pk>/{name}", jobs.press, {"action": name}, name=name) for name in ACTIONS),
    path("jobs/<int:pk>/<slug:action>", jobs.press, name="press"),
    path("runs/<int:pk>/", runs.run_detail, name="run_detail"),
    path("companies/<int:pk>/active", jobs.active_runs, name="active"),
    path("companies/<int:pk>/sync", jobs.sync_company, name="sync"),
    path("jobs/<int:pk>/", jobs.job_detail, name="job_detail"),
    path("history/", history.history, name="history"),
    path("history/export.csv", exports.history_export, name="history_export"),
    path("history/exports/latest", exports.export_latest, name="export_latest"),
    path("history/exports/<int:pk>/", exports.export_progress, name="export_progress"),
    path("history/exports/<int:pk>/download", exports.export_download, name="export_download"),
    path("history/job-names", history.history_job_names, name="history_job_names"),
    path("settings/", preferences.preferences, name="preferences"),
    path("history/memberships/", history.membership_history, name="membership_history"),
    # Probes and Prometheus (issue 21; contract in jobs/metrics.py): no login.
    path("healthz", health.healthz, name="health"),
    path("readyz", health.readyz, name="ready"),
    path("metrics", health.metrics_view, name="metrics"),
]
