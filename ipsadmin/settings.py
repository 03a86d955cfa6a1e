"""ipsadmin settings: one module, read from the environment.

Development defaults are safe for a laptop; with DEBUG off, every secret must
come from the environment and the deploy hardening switches on.
"""

import ipaddress
import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name, default=None):
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"Set the environment variable {name}.")
        return default
    return value


def env_bool(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}.")


def env_float(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None
    if number <= 0:
        raise ImproperlyConfigured(f"{name} must be positive, not {value!r}.")
    return number


def env_int(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None
    if number < 0:
        raise ImproperlyConfigured(f"{name} must not be negative, not {value!r}.")
    return number


def env_list(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)

_DEV_SECRET_KEY = "django-insecure-ipsadmin-development-only"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY if DEBUG else None)
if not DEBUG and SECRET_KEY == _DEV_SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY is the development key; set a real one with DEBUG off.")
# deploy/ipsadmin.env.example's placeholder, copied unchanged, would be a key everyone knows.
if not DEBUG and "change-me" in SECRET_KEY.lower():
    raise ImproperlyConfigured("SECRET_KEY is the template's placeholder (change-me…); set a random one with DEBUG off.")
# Rotation: the old key here (comma-separated) while the new one is SECRET_KEY, and sessions signed with it
# stay valid until they expire (docs/deploy.md, "Key rotation").
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

# How many reverse proxies stand in front, each appending to X-Forwarded-For
# (0: clients connect directly). Decides the client IP of the audit trail and
# of login throttling, and whether an incoming X-Request-ID is kept.
TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",
    "csp",
    "django_tasks",
    "django_tasks_db",
    "jobs",
    "ipsemulator",
]

# htmx is loaded from our own origin and configured through a <meta> tag, so
# no inline script or style is needed anywhere, the Django admin included.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

MIDDLEWARE = [
    "jobs.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "jobs.middleware.BidiControlMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Times in the user's zone (profile, else browser, else TIME_ZONE).
    "jobs.timezones.TimezoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "ipsadmin.urls"
WSGI_APPLICATION = "ipsadmin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "jobs.context_processors.htmx",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database host that takes the connection and then says nothing must cost seconds, not a worker:
    # /readyz answers 503 with the reason, gunicorn's start check fails instead of hanging. libpq's least is 2 s.
    # A connect_timeout in DATABASE_URL's query string wins.
    _CONNECT_TIMEOUT = env_int("DATABASE_CONNECT_TIMEOUT", 5)
    if _CONNECT_TIMEOUT < 1:
        raise ImproperlyConfigured("DATABASE_CONNECT_TIMEOUT must be at least 1 (seconds); 0 would wait forever.")
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", _CONNECT_TIMEOUT)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several gunicorn workers write the audit table: wait for the lock
    # instead of failing with "database is locked".
    # WAL: a commit is one append and one fsync of the log, not a journal written, synced and
    # deleted (a press commits several times; bench/run_burst.py), and readers never wait for
    # a writer. synchronous stays FULL: an audit row committed is on disk.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
    }
    # Kept open between requests (CONN_MAX_AGE above), as on PostgreSQL: opening the file and
    # setting it up again cost every request ~1 ms (a logged-in no-op POST in process: 2.4 → 1.4 ms).
    # A file, not memory: tests that start gunicorn or kill a worker process
    # need the test database visible to other processes. One per test run,
    # so that two runs on one machine never share it.
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: throttles every backend after it
    # IPS emails first, on connections with sign-in with IPS on; never local accounts. Before the local
    # backend, so an IPS sign-in does not first pay a local password hash it has no use for.
    "jobs.auth.IpsBackend",
    "jobs.auth.LocalBackend",  # local accounts (superusers, break-glass); never one that signs in with IPS
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# The dashboard's languages: the browser's choice, or the one picked in the header (a cookie).
LANGUAGES = [("en", "English"), ("it", "Italiano")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where collectstatic writes and nginx serves /static/ from (deploy/nginx-ipsadmin.conf).
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# htmx requests with a stale token get a message, not a swapped error page.
CSRF_FAILURE_VIEW = "jobs.views.csrf_failure"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "jobs:list"
LOGOUT_REDIRECT_URL = "login"

# Refuse oversized POST bodies early (a Run carries no body at all).
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200

# IPS calls: a hung IPS must cost one timeout, never a stuck worker. The read
# timeout stays well below gunicorn's worker timeout.
IPS_CONNECT_TIMEOUT = env_float("IPS_CONNECT_TIMEOUT", 3.0)
IPS_READ_TIMEOUT = env_float("IPS_READ_TIMEOUT", 10.0)
# The SOAP binding spoken where a WSDL has both: "" for 1.1 (the wire the reference
# documents), "1.2" for its 1.2 binding. Replies are read in either (docs/ips-versions.md).
IPS_SOAP_VERSION = env_str("IPS_SOAP_VERSION", "")
# gunicorn's worker timeout (ipsadmin/gunicorn.conf.py reads the same variable): a whole
# sign-in or admin action across connections must end inside it (services.connections.Deadline).
GUNICORN_TIMEOUT = env_float("GUNICORN_TIMEOUT", 45.0)
# A Run makes at most two IPS calls (getActiveJobs, then executeJob; the watcher
# names the run), each with a whole-reply deadline of connect + read timeout:
# gunicorn refuses to start unless all fit in its worker timeout (jobs/checks.py).
# A 'sending' row older than the timeouts of a run's IPS calls plus this
# margin belongs to a process that died mid-call, and is marked interrupted.
IPS_STALE_MARGIN = env_float("IPS_STALE_MARGIN", 30.0)
# A run IPS says nothing of for this long (not running, no final log) is recorded
# as "no result from IPS" by the watcher, after one more look.
IPS_FOLLOW_DEADLINE = timedelta(hours=env_float("IPS_FOLLOW_DEADLINE_HOURS", 24.0))
# The watcher of each company's runs (jobs/services/watch.py, `manage.py watch_ips`): a look
# every IPS_WATCH_INTERVAL seconds while IPS runs something watched here, else every
# IPS_WATCH_IDLE_INTERVAL (IPS's own runs are found then). Logs are read again from the last
# start seen less the overlap; a company's first look reads back IPS_WATCH_BACKFILL_HOURS.
# A press whose run is not in IPS past IPS_WATCH_GRACE (IPS's clock) was not started.
IPS_WATCH_INTERVAL = env_float("IPS_WATCH_INTERVAL", 10.0)
IPS_WATCH_IDLE_INTERVAL = env_float("IPS_WATCH_IDLE_INTERVAL", 60.0)
IPS_WATCH_LEASE_MARGIN = env_float("IPS_WATCH_LEASE_MARGIN", 5.0)
IPS_WATCH_LOG_OVERLAP = timedelta(minutes=env_float("IPS_WATCH_LOG_OVERLAP_MINUTES", 5.0))
IPS_WATCH_BACKFILL = timedelta(hours=env_float("IPS_WATCH_BACKFILL_HOURS", 24.0))
IPS_WATCH_GRACE = timedelta(seconds=env_float("IPS_WATCH_GRACE", 30.0))
# Without IPS's Date header, times are judged on the dashboard's clock moved by the last offset seen, +- this.
IPS_WATCH_CLOCK_SLACK = timedelta(seconds=env_float("IPS_WATCH_CLOCK_SLACK", 2.0))
# Sign-in with IPS: user types read from IPS are refreshed at each sign-in and
# by the refresh task; one older than this no longer lets its holder run or
# stop jobs (they read on), until IPS confirms it again.
IPS_MEMBERSHIP_MAX_AGE = timedelta(hours=env_float("IPS_MEMBERSHIP_MAX_AGE_HOURS", 24.0))
IPS_MEMBERSHIP_REFRESH = timedelta(minutes=env_float("IPS_MEMBERSHIP_REFRESH_MINUTES", 60.0))

# Background work through Django's Tasks API (the django-tasks backport: on
# Django 6 this becomes django.tasks). "db" keeps tasks in the database
# (django-tasks-db; `manage.py db_worker` runs them), "rq" in Redis
# (django-tasks-rq; `manage.py rqworker --with-scheduler`). Nothing in jobs/
# depends on which: see docs/deploy.md.
TASKS_BACKEND = env_str("TASKS_BACKEND", "db")
_TASK_BACKENDS = {
    "db": "django_tasks_db.DatabaseBackend",
    "rq": "django_tasks_rq.RQBackend",
}
if TASKS_BACKEND not in _TASK_BACKENDS:
    raise ImproperlyConfigured(f"TASKS_BACKEND must be one of {sorted(_TASK_BACKENDS)}, not {TASKS_BACKEND!r}.")
TASKS = {"default": {"BACKEND": _TASK_BACKENDS[TASKS_BACKEND]}}
#: Jobs in Redis are JSON, never pickle (unpickling a forged job runs its code); rqworker reads only this.
RQ_SERIALIZER = "rq.serializers.JSONSerializer"
if TASKS_BACKEND == "rq":
    INSTALLED_APPS.append("django_rq")
    # RQ must run the Tasks API's own job class (else: "'Task' object is not callable").
    RQ = {"JOB_CLASS": "django_tasks_rq.Job"}
    RQ_QUEUES = {
        "default": {
            # redis://:<password>@host:6379/0 (or rediss:// for TLS): Redis must not be open to anyone.
            "URL": env_str("REDIS_URL", "redis://127.0.0.1:6379/0"),
            "DEFAULT_TIMEOUT": 600,
            "SERIALIZER": RQ_SERIALIZER,
        }
    }
# History exports (jobs/tasks.py: export_history): the CSV is written by a background
# worker to this directory (created if missing), kept EXPORTS_KEEP_HOURS, then deleted
# by the cleanup chore. An export whose worker has not reported for
# EXPORTS_STALE_SECONDS is taken as dead ("the worker stopped").
EXPORTS_DIR = Path(env_str("EXPORTS_DIR", str(BASE_DIR / "var" / "exports")))
EXPORTS_KEEP = timedelta(hours=env_float("EXPORTS_KEEP_HOURS", 24.0))
EXPORTS_STALE = timedelta(seconds=env_float("EXPORTS_STALE_SECONDS", 300.0))
#: Rows between two progress reports of the worker (one UPDATE each).
EXPORTS_PROGRESS_EVERY = env_int("EXPORTS_PROGRESS_EVERY", 20_000)
# Behind nginx: the internal location that serves EXPORTS_DIR (e.g. /_exports/); the download then
# answers with X-Accel-Redirect and nginx sends the file (docs/deploy.md). Empty: gunicorn sends it.
EXPORTS_ACCEL_REDIRECT = env_str("EXPORTS_ACCEL_REDIRECT", "")
IPS_APP_NAME = "ipsadmin"
IPS_APP_VERSION = "0.1"

# Key that encrypts IPS passwords at rest (Fernet, urlsafe base64 of 32 bytes).
# In development it is derived from SECRET_KEY; production must set it.
# Fernet keys for the IPS passwords at rest, comma-separated: the first
# encrypts, every one decrypts (rotation: prepend a new key, run
# `manage.py rotate_ips_passwords`, then drop the old one). In development
# without it, a key generated once for this checkout (never derived from a
# public value) is kept in IPSADMIN_DEV_KEY_FILE.
IPSADMIN_ENCRYPTION_KEY = os.environ.get("IPSADMIN_ENCRYPTION_KEY", "")
IPSADMIN_DEV_KEY_FILE = Path(os.environ.get("IPSADMIN_DEV_KEY_FILE", BASE_DIR / "var" / "dev-encryption-key"))
if not DEBUG and not IPSADMIN_ENCRYPTION_KEY:
    raise ImproperlyConfigured("Set IPSADMIN_ENCRYPTION_KEY (a Fernet key) with DEBUG off.")

# Login throttling.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)  # per user name and address
# Per address across user names (password spraying); higher, for offices behind one NAT.
AXES_IP_FAILURE_LIMIT = env_int("AXES_IP_FAILURE_LIMIT", 20)
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HANDLER = "jobs.throttle.UserAndAddressHandler"
# One email spelled five ways (case, blanks, compatibility forms) is one user name to count.
AXES_USERNAME_CALLABLE = "jobs.throttle.throttle_username"
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "jobs.middleware.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
# Log lines name the client IP; the username stays out of logs (people type
# passwords into it) and is in the admin's access attempts instead.
AXES_SENSITIVE_PARAMETERS = ["username"]

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(env_float("SECURE_HSTS_SECONDS", 31536000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_HTTPONLY = True
# Database sessions; a sign-in's new session is written once, not created and then updated (jobs/sessions.py).
SESSION_ENGINE = "jobs.sessions"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Error reports (DEBUG page, mailed or logged reports) hide anything named like
# a password, secret, token or key, and the frames of the SOAP stack.
DEFAULT_EXCEPTION_REPORTER_FILTER = "jobs.reporting.SecretCleansingExceptionReporterFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "jobs.middleware.RequestIdLogFilter"}},
    # One JSON object per line: a value with a newline (an IPS fault reason,
    # a job name) stays inside its line and can forge none.
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(request_id)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Failed logins (WARNING) and successful ones (INFO), with username and IP.
        "axes": {"level": "INFO"},
        "axes.apps": {"level": "WARNING"},  # not the version banner at every start
        # zeep logs whole envelopes at DEBUG, authHeader password included.
        "zeep": {"level": "WARNING"},
        "zeep.transports": {"level": "WARNING"},
    },
}

# --- Notifications (issue 19: jobs/services/notify.py, sent by the task worker) ---
# The absolute address of the dashboard, for the links in emails and webhooks (`make run`: the default).
# Production must set it (e.g. https://ipsadmin.example.com); without it the links are paths only.
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000" if DEBUG else "").rstrip("/")
# Email: printed on the console in development (`make run`); SMTP from the environment in production.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "ipsadmin <ipsadmin@localhost>")
# Webhooks (signed, Slack, Teams): per try a connect and a read timeout; the waits before each try
# after the first (seconds; the number of tries is one more than their count).
NOTIFY_CONNECT_TIMEOUT = env_float("NOTIFY_CONNECT_TIMEOUT", 3.0)
NOTIFY_READ_TIMEOUT = env_float("NOTIFY_READ_TIMEOUT", 10.0)
NOTIFY_RETRY_DELAYS = [float(s) for s in env_list("NOTIFY_RETRY_DELAYS", ["30", "300"])]
# A claimed send whose worker has not finished it after this long died mid-send: it may be tried again.
NOTIFY_CLAIM_SECONDS = env_float("NOTIFY_CLAIM_SECONDS", 120.0)
# The delivery log keeps ended notifications (sent, failed, not sent) this long (the chore resume_notifications).
NOTIFY_KEEP_DAYS = env_int("NOTIFY_KEEP_DAYS", 90)
# Webhook URLs that resolve to loopback, private or link-local addresses are refused (SSRF) unless this is on;
# on by default in development, where receivers run on this machine.
NOTIFY_ALLOW_PRIVATE_TARGETS = env_bool("NOTIFY_ALLOW_PRIVATE_TARGETS", DEBUG)

# --- Metrics and health (issue 21: jobs/metrics.py, jobs/views/health.py) ---
# /metrics answers a bearer token (Authorization: Bearer <METRICS_TOKEN>) or the addresses and networks of
# METRICS_ALLOW (the client address as the audit trail reads it: TRUSTED_PROXIES honoured); neither set:
# 404. Development (`make run`): this machine, without a token.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 24:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 24 characters (e.g. python -c 'import secrets; "
                               "print(secrets.token_urlsafe(32))').")
if not DEBUG and "change-me" in METRICS_TOKEN.lower():
    # deploy/ipsadmin.env.example's placeholder, copied unchanged: a token anyone can read.
    raise ImproperlyConfigured("METRICS_TOKEN is the template's placeholder; set a random one (python -c 'import "
                               "secrets; print(secrets.token_urlsafe(32))') or leave it empty.")
METRICS_ALLOW = env_list("METRICS_ALLOW", ["127.0.0.1/32", "::1/128"] if DEBUG else [])
try:
    METRICS_ALLOW_NETWORKS = [ipaddress.ip_network(a, strict=False) for a in METRICS_ALLOW]
except ValueError as _error:
    raise ImproperlyConfigured(f"METRICS_ALLOW: {_error}") from None
# Every process that counts (gunicorn's workers, watch_ips, db_worker) writes its counts to files in this
# directory and /metrics sums them (prometheus-client's multiprocess mode; the variable is the library's
# own, read when it is imported). Empty: each process counts for itself, /metrics shows its own.
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if PROMETHEUS_MULTIPROC_DIR:
    try:
        os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)
        if not os.access(PROMETHEUS_MULTIPROC_DIR, os.W_OK | os.X_OK):
            raise PermissionError(f"not writable by uid {os.getuid()}")
    except OSError as _error:
        # Metrics never stop a process: this one counts for itself. Dropped before prometheus_client is
        # imported (jobs/metrics.py), which reads the variable then. Logging is not configured yet: stderr.
        sys.stderr.write(f"ipsadmin: PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR!r} cannot be used "
                         f"({_error}); this process's metrics are its own (check --deploy: jobs.W002).\n")
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        PROMETHEUS_MULTIPROC_DIR = ""
# /readyz: a task worker is seen when it ran a chore within this (on any task backend; three periods of the
# 5-minute notifications sweep); the watcher when it looked at a company within this (five idle looks).
READYZ_WORKER_MAX_AGE = timedelta(seconds=env_float("READYZ_WORKER_MAX_AGE", 900.0))
READYZ_WATCHER_MAX_AGE = timedelta(seconds=env_float("READYZ_WATCHER_MAX_AGE", 5 * IPS_WATCH_IDLE_INTERVAL))
# Probes and Prometheus ask the app server itself over plain HTTP, not through the TLS proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
