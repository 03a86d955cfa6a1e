from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from jobs import auth

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth.login, name="login"),
    # set_language: the header's language buttons (POST, CSRF-checked, a cookie).
    path("i18n/", include("django.conf.urls.i18n")),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("jobs.urls")),
]
