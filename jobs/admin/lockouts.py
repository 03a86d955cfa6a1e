"""django-axes' admin (login lockouts) in the page's language: axes ships no Italian.

Its words are marked here, as axes marks them, so that the project's catalogue
carries their Italian (gettext finds a msgid in any catalogue); its attempts' admin
is registered again with the two columns it names in plain English translated."""

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

#: axes.models and axes.admin's msgids (django-axes 8), exactly as it writes them.
THEIR_WORDS = [
    _("User Agent"), _("IP Address"), _("Username"), _("HTTP Accept"), _("Path"), _("Attempt Time"),
    _("Access lock out"), _("access failure"), _("access failures"), _("GET Data"), _("POST Data"),
    _("Failed Logins"), _("access attempt"), _("access attempts"), _("Access Attempt"), _("Expires At"),
    _("The time when access attempt expires and is no longer valid."), _("access attempt expiration"),
    _("access attempt expirations"), _("Logout Time"), _("Session key hash (sha256)"), _("access log"),
    _("access logs"), _("Locked Out"), _("Form Data"), _("Meta Data"), _("Clean up expired attempts"),
    _("Not set"), _("Attempt Remaining"),
]

class LockoutAdmin(AccessAttemptAdmin):
    @admin.display(description=_("expires"))
    def expiration(self, obj):
        return super().expiration(obj)

    @admin.display(description=_("status"))
    def status(self, obj):
        return super().status(obj)


if admin.site.is_registered(AccessAttempt):  # axes registers it unless AXES_ENABLE_ADMIN is off
    admin.site.unregister(AccessAttempt)
    admin.site.register(AccessAttempt, LockoutAdmin)
