"""The project's settings, its URLs plus one view that does nothing (bench/floor_urls.py): the floor under a press.

bench/run_burst.py serves this module (DJANGO_SETTINGS_MODULE=bench.floor_settings) so
that a logged-in htmx POST to /_bench/noop passes every middleware a press passes
(request id, CSP, session, locale, CSRF, the user and their profile, the time zone,
messages, htmx, axes) and the same login and POST checks, and then answers an empty
200: what any press costs before its own work. Nothing here is served by the product.
"""

from ipsadmin.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.floor_urls"
