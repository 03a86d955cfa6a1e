"""Sign in with IPS: an authentication backend for the connections that allow it.

A person logs in with their IPS email and password; IPS checks them
(checkLogin) and says who they are and where (getUserInfo and
getCompanyMembership, as themselves, asked at the same time). The password
is used for those calls and never stored. django-axes sits before this
backend in AUTHENTICATION_BACKENDS, so IPS logins are throttled like any other.
"""

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import transaction
from django.utils.translation import gettext

from . import ips, throttle
from .services import connections, people
from .models import Connection, IpsIdentity

log = logging.getLogger(__name__)


class LocalBackend(ModelBackend):
    """Local accounts, by their password here; never an account that signs in with IPS.

    IPS says who such an account is: a password set on it here (by an
    administrator, or by whoever took the admin's password form) must not make
    it anyone's to log in as, IpsAdmin memberships and all."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username and _ips_decides(username):
            # IpsBackend, before this one, asked IPS: no local password to hash (~200 ms for nothing).
            # Names that stay here (local accounts, names without "@", no connection signing in with IPS)
            # are hashed as before, found or not: timing tells no more than it did.
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def user_can_authenticate(self, user):
        return super().user_can_authenticate(user) and not _signs_in_with_ips(user)

    def get_user(self, user_id):
        # Every request reads its user through here: its identity in the same query.
        User = get_user_model()
        user = User._default_manager.select_related("ips_identity", "profile").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None


def _ips_decides(username: str) -> bool:
    """Whether this name is IPS's to check (IpsBackend's own rule), never a local password's."""
    if "@" not in username or people.is_local_account(username):
        return False
    return Connection.objects.filter(ips_sign_in=True).exists()


def _signs_in_with_ips(user) -> bool:
    try:
        user.ips_identity
    except IpsIdentity.DoesNotExist:
        return False
    return True


class IpsBackend(ModelBackend):
    """Authenticates IPS emails against every connection with sign-in with IPS switched on."""

    def get_user(self, user_id):
        # Every request of an IPS sign-in reads its user through here: its settings in the same
        # query (the time zone middleware's).
        User = get_user_model()
        user = User._default_manager.select_related("profile").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not username or not password or "@" not in username:
            return None  # local accounts are ModelBackend's
        if people.is_local_account(username):
            return None  # its password never goes to IPS
        signing_in = list(Connection.objects.filter(ips_sign_in=True).order_by("pk"))
        if signing_in and not throttle.count_ips_check(request, username):
            # Simultaneous attempts took what the address (or the name) had left: locked out.
            request.axes_locked_out = True
            request.axes_credentials = {"username": username}
            return None
        # One deadline for the whole sign-in, across connections, inside the worker's timeout:
        # no IPS call starts that could not end before it.
        deadline = connections.Deadline()
        for connection in signing_in:
            try:
                user = people.sign_in_with_ips(connection, username.strip(), password, deadline)
            except people.SignInRefused as refusal:
                _say(request, str(refusal))
                if refusal.final:
                    return None
                continue  # this connection may not; another may
            except ips.IpsError as error:
                log.warning("sign-in with IPS on %s failed: %s", connection, error)
                _say(request, gettext("IPS could not check your password just now (%(error)s). Try again later.") % {"error": error})
                continue
            if user is not None:
                return user if self.user_can_authenticate(user) else None
        return None


def _say(request, text: str) -> None:
    if request is not None:
        request.ips_sign_in_error = text


class LoginForm(AuthenticationForm):
    """The login form, saying why sign-in with IPS refused, when it did."""

    #: The longest user name tried: an email's longest. A longer one is refused here, before it is
    #: counted (axes keeps 255 characters) or sent anywhere.
    USERNAME_MAX = 254

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        # AuthenticationForm sets max_length after the field is built: it is shown, never validated.
        field = self.fields["username"]
        field.max_length = self.USERNAME_MAX
        field.widget.attrs["maxlength"] = str(self.USERNAME_MAX)
        field.validators.append(MaxLengthValidator(self.USERNAME_MAX))

    def get_invalid_login_error(self):
        text = getattr(self.request, "ips_sign_in_error", None)
        if text:
            return ValidationError(text, code="ips_sign_in")
        return super().get_invalid_login_error()


class _LoginView(auth_views.LoginView):
    authentication_form = LoginForm

    def form_valid(self, form):
        # What a sign-in writes once the password is checked (the session, axes' log of the login and its
        # attempt counted before IPS taken back, last_login): one commit, not one each.
        with transaction.atomic():
            return super().form_valid(form)


#: The login page: Django's, with LoginForm.
login = _LoginView.as_view()
