"""Error reports that never show a secret.

Django's SafeExceptionReporterFilter hides settings whose names look secret,
but POST parameters and frame variables only where a view was decorated with
``sensitive_post_parameters``/``sensitive_variables``, and only with DEBUG
off. The IPS password passes through forms (the connection admin), local
variables (``password``) and the SOAP stack (the envelope carries the
authHeader), so this filter:

* is always active, DEBUG or not: the technical 500 page of a developer
  machine hides the same values as the report mailed or logged in production;
* cleanses every POST parameter, and every frame variable, whose name looks
  secret (password, passwd, secret, token, key, credential, signature), and
  inside dicts and lists, every key that looks secret;
* cleanses every variable of frames in the modules that hold the SOAP
  envelope or the decrypted password (zeep, requests, urllib3, http.client,
  jobs.ips, jobs.crypto), whatever its name.
"""

from __future__ import annotations

import re

from django.utils.datastructures import MultiValueDict
from django.views.debug import SafeExceptionReporterFilter

SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|credential|signature", re.IGNORECASE)

# Modules whose frames hold the envelope (authHeader password) or the
# decrypted password in variables with innocent names (message, body, data).
_SECRET_MODULES = ("zeep", "requests", "urllib3", "http.client", "jobs.ips", "jobs.crypto")


def _is_secret_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in _SECRET_MODULES)


class SecretCleansingExceptionReporterFilter(SafeExceptionReporterFilter):
    def is_active(self, request):
        return True

    def _cleanse(self, name, value, depth=0):
        """Substitute ``value`` if ``name`` looks secret; look into containers
        (a few levels deep: frames may hold cyclic structures)."""
        if isinstance(name, str) and SECRET_NAME.search(name):
            return self.cleansed_substitute
        if depth > 4:
            return value
        try:
            if isinstance(value, MultiValueDict):
                cleansed = value.copy()
                for key in value:
                    if isinstance(key, str) and SECRET_NAME.search(key):
                        cleansed[key] = self.cleansed_substitute
                return cleansed
            if isinstance(value, dict):
                return {k: self._cleanse(k, v, depth + 1) for k, v in value.items()}
            if isinstance(value, list):
                return [self._cleanse(None, v, depth + 1) for v in value]
            if isinstance(value, tuple):
                return tuple(self._cleanse(None, v, depth + 1) for v in value)
        except Exception:  # an odd container: show nothing rather than fail the report
            return self.cleansed_substitute
        return value

    def get_post_parameters(self, request):
        if request is None:
            return {}
        params = super().get_post_parameters(request)
        if not any(SECRET_NAME.search(k) for k in params):
            return params
        cleansed = params.copy()
        for key in params:
            if SECRET_NAME.search(key):
                cleansed[key] = self.cleansed_substitute
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        if _is_secret_module(tb_frame.f_globals.get("__name__", "")):
            return [(name, self.cleansed_substitute) for name, _ in variables]
        return [(name, self._cleanse(name, value)) for name, value in variables]
