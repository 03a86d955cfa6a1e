from django.urls import path

from . import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("jobs/<int:pk>/run", views.run_job, name="run"),
    path("jobs/<int:pk>/status", views.job_status, name="status"),
    path("jobs/<int:pk>/stop", views.stop_job, name="stop"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("companies/<int:pk>/active", views.active_runs, name="active"),
    path("companies/<int:pk>/sync", views.sync_company, name="sync"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("history/", views.history, name="history"),
    path("history/export.csv", views.history_export, name="history_export"),
    path("history/job-names", views.history_job_names, name="history_job_names"),
    path("settings/", views.preferences, name="preferences"),
    path("history/memberships/", views.membership_history, name="membership_history"),
    path("healthz", views.health, name="health"),
]
