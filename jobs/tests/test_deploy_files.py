"""deploy/ agrees with the code: the environment template, the systemd units, nginx, Prometheus.

Each example is text an operator copies; these tests keep it from drifting from what the settings read,
the commands that exist, the paths the settings name and the metrics jobs/metrics.py exposes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands

BASE_DIR = Path(settings.BASE_DIR)
DEPLOY = BASE_DIR / "deploy"
ENV_TEMPLATE = DEPLOY / "ipsadmin.env.example"
UNITS = sorted((DEPLOY / "systemd").iterdir())
NGINX = (DEPLOY / "nginx-ipsadmin.conf").read_text()
#: Read by the settings, but for development only: no place in a production environment.
DEVELOPMENT_ONLY = {"IPSADMIN_DEV_KEY_FILE"}
#: Without these (or with the development default) the settings refuse to load, or serve nobody, with DEBUG off.
PRODUCTION_REQUIRED = {"DEBUG", "SECRET_KEY", "IPSADMIN_ENCRYPTION_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS",
                       "DATABASE_URL", "SITE_URL"}


def _template() -> dict[str, tuple[str, bool]]:
    """NAME -> (value, set): every variable of the template, set or shown commented out."""
    found = {}
    for line in ENV_TEMPLATE.read_text().splitlines():
        m = re.match(r"^(# ?)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            found[m.group(2)] = (m.group(3), m.group(1) is None)
    return found


def _environment() -> dict[str, str]:
    """The template's set variables as systemd's EnvironmentFile= reads them (quotes removed)."""
    return {name: value[1:-1] if value[:1] == value[-1:] == '"' else value
            for name, (value, is_set) in _template().items() if is_set}


def _read_by_settings() -> set[str]:
    source = "".join((BASE_DIR / "ipsadmin" / name).read_text() for name in ("settings.py", "gunicorn.conf.py"))
    return set(re.findall(r'(?:env_\w+|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]*)"', source))


def test_every_variable_of_the_template_is_read_by_the_settings():
    unknown = set(_template()) - _read_by_settings()
    assert not unknown, f"deploy/ipsadmin.env.example names variables nothing reads: {sorted(unknown)}"


def test_every_variable_the_settings_read_is_in_the_template():
    missing = _read_by_settings() - set(_template()) - DEVELOPMENT_ONLY
    assert not missing, f"the settings read variables deploy/ipsadmin.env.example does not show: {sorted(missing)}"


def test_the_variables_production_requires_are_set_in_the_template():
    template = _template()
    unset = {name for name in PRODUCTION_REQUIRED if not template.get(name, ("", False))[1]}
    assert not unset, unset
    assert template["DEBUG"] == ("0", True)


def _load_settings(**changes) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "ipsadmin.settings", **_environment(), **changes}
    env["PROMETHEUS_MULTIPROC_DIR"] = ""  # the settings would make /run/ipsadmin/metrics
    return subprocess.run(
        [sys.executable, "-c", "from django.conf import settings as s; print(s.DEBUG, s.TRUSTED_PROXIES, "
                               "s.SECURE_HSTS_SECONDS, s.STATIC_ROOT, s.EXPORTS_ACCEL_REDIRECT, s.DEFAULT_FROM_EMAIL, "
                               "s.DATABASES['default']['OPTIONS']['connect_timeout'])"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)


def test_the_template_loads_the_production_settings_once_its_metrics_token_is_replaced():
    # Placeholders included: a value the settings refuse (a METRICS_TOKEN too short, a bad boolean) fails here.
    done = _load_settings(METRICS_TOKEN="q" * 43, SECRET_KEY="k" * 64)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "1", "31536000", "/srv/ipsadmin/staticfiles", "/_exports/", "ipsadmin",
                                   "<ipsadmin@example.com>", "5"]


def test_the_templates_metrics_token_placeholder_is_refused_with_debug_off():
    """Copied unchanged, the template's token would be one anyone can read (R1 review, M6)."""
    assert "change-me" in _environment()["METRICS_TOKEN"]
    done = _load_settings(SECRET_KEY="k" * 64)
    assert done.returncode != 0
    assert "METRICS_TOKEN is the template's placeholder" in done.stderr
    assert _load_settings(DEBUG="1").returncode == 0  # development: a laptop's token is its own business


def test_the_templates_secret_key_placeholder_is_refused_with_debug_off():
    """Copied unchanged, the template's SECRET_KEY would sign every session with a key anyone can read."""
    assert "change-me" in _environment()["SECRET_KEY"]
    done = _load_settings(METRICS_TOKEN="q" * 43)
    assert done.returncode != 0
    assert "SECRET_KEY is the template's placeholder" in done.stderr
    assert _load_settings(METRICS_TOKEN="q" * 43, SECRET_KEY="k" * 64).returncode == 0


# --- systemd -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix == ".service"], ids=lambda u: u.name)
def test_each_service_runs_a_command_that_exists_from_the_environment_file(unit):
    text = unit.read_text()
    assert "EnvironmentFile=/etc/ipsadmin/env" in text
    assert "User=ipsadmin" in text and "WorkingDirectory=/srv/ipsadmin" in text
    commands = re.findall(r"^ExecStart=/srv/ipsadmin/\.venv/bin/(?:python manage\.py (\S+)|(gunicorn) )", text, re.M)
    assert commands, f"{unit.name}: no ExecStart of the project"
    for command, gunicorn in commands:
        assert gunicorn or command in get_commands(), f"{unit.name}: manage.py {command} does not exist"


def test_the_web_unit_reloads_gracefully_and_waits_for_a_press_in_flight():
    text = (DEPLOY / "systemd" / "ipsadmin-web.service").read_text()
    assert "ExecReload=/bin/kill -s HUP $MAINPID" in text
    assert "-c ipsadmin/gunicorn.conf.py" in text
    # Stopping waits longer than gunicorn's graceful timeout (the worker timeout: a Run's IPS calls).
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.M).group(1))
    assert stop > settings.GUNICORN_TIMEOUT
    # The socket unit listens where gunicorn would bind.
    socket = (DEPLOY / "systemd" / "ipsadmin-web.socket").read_text()
    assert f"ListenStream={_environment()['GUNICORN_BIND']}" in socket


ONESHOT = {"ipsadmin-chores.service", "ipsadmin-cron.service", "ipsadmin-prune.service"}


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix == ".service"], ids=lambda u: u.name)
def test_each_service_is_hardened_and_only_long_running_ones_write_metrics(unit):
    text = unit.read_text()
    for line in ("NoNewPrivileges=true", "ProtectSystem=strict", "ProtectHome=true", "PrivateDevices=true",
                 "SystemCallFilter=@system-service", "UMask=0027"):
        assert line in text, f"{unit.name}: {line}"
    if unit.name in ONESHOT:
        # Short-lived: no metrics files left behind, no need of /run/ipsadmin (R1 review, M3).
        assert "Type=oneshot" in text and "UnsetEnvironment=PROMETHEUS_MULTIPROC_DIR" in text
        assert "RuntimeDirectory=" not in text
    else:
        assert "RuntimeDirectory=ipsadmin" in text and "RuntimeDirectoryPreserve=yes" in text
        assert "ReadWritePaths=/srv/ipsadmin/var" in text and _environment()["EXPORTS_DIR"].startswith(
            "/srv/ipsadmin/var/")


def test_prune_runs_as_the_owner_and_the_rest_as_the_app():
    for unit in UNITS:
        owner = "EnvironmentFile=/etc/ipsadmin/owner.env" in unit.read_text()
        assert owner == (unit.name == "ipsadmin-prune.service"), unit.name


# --- nginx -------------------------------------------------------------------------------------------


def test_nginx_serves_the_exports_dir_internally_at_the_accel_redirect_prefix():
    env = _environment()
    prefix = env["EXPORTS_ACCEL_REDIRECT"]
    block = re.search(rf"location {re.escape(prefix)} \{{(.*?)\}}", NGINX, re.S)
    assert block, f"no nginx location for EXPORTS_ACCEL_REDIRECT={prefix}"
    assert "internal;" in block.group(1)
    assert f"alias {env['EXPORTS_DIR'].rstrip('/')}/;" in block.group(1)


def test_nginx_serves_static_from_static_root_and_sets_the_headers_the_app_believes():
    assert f"alias {_environment()['STATIC_ROOT'].rstrip('/')}/;" in NGINX
    # TRUSTED_PROXIES=1: nginx appends the address it saw; X-Forwarded-Proto is set, never passed through.
    assert _environment()["TRUSTED_PROXIES"] == "1"
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in NGINX
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in NGINX
    assert f"server {_environment()['GUNICORN_BIND']} " in NGINX


def test_nginx_redirects_to_its_own_name_and_sends_the_apps_hsts():
    names = set(re.findall(r"server_name ([^_;\s]+);", NGINX))
    assert names == {"ipsadmin.example.com"}
    assert "$host" not in re.search(r"return 301 (\S+);", NGINX).group(1)  # never the request's Host
    assert "return 301 https://ipsadmin.example.com$request_uri;" in NGINX
    hsts = re.findall(r'add_header Strict-Transport-Security "([^"]+)"', NGINX)
    assert hsts == [f"max-age={_environment()['SECURE_HSTS_SECONDS']}; includeSubDomains; preload"]
    assert re.search(r"^\s*ssl_ciphers ECDHE-[A-Z0-9:-]+;$", NGINX, re.M)


def test_the_ops_server_is_not_the_load_balancers():
    ops = NGINX[NGINX.index("# The ops server"):]
    assert "load balancer's health check is /healthz" in ops and "readyz for the load balancer" not in ops


# --- Prometheus ----------------------------------------------------------------------------------------


def _exposed_metrics() -> set[str]:
    source = (BASE_DIR / "jobs" / "metrics.py").read_text() + (BASE_DIR / "jobs" / "views" / "health.py").read_text()
    return set(re.findall(r'"(ipsadmin_[a-z_]+)"', source))


def test_the_alert_rules_parse_and_name_only_metrics_the_app_exposes():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "ipsadmin-alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    names = {a["alert"] for a in alerts}
    # The four: worker down, follow lag, IPS errors, a company not synced.
    assert {"IpsadminTaskWorkerDown", "IpsadminFollowLag", "IpsadminIpsErrors", "IpsadminCompanyNotSynced"} <= names
    exposed = _exposed_metrics()
    for alert in alerts:
        assert alert["labels"]["severity"] in ("page", "warn") and alert["annotations"]["summary"]
        for used in re.findall(r"ipsadmin_[a-z_]+", alert["expr"]):
            base = re.sub(r"_(bucket|count|sum|total)$", "", used)
            assert base in exposed, f"{alert['alert']}: {used} is not a metric of jobs/metrics.py"


def test_the_scrape_config_sends_the_bearer_token_to_each_host():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "ipsadmin"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
    assert "ipsadmin-alerts.yml" in config["rule_files"][0]


def test_the_alert_rules_pass_their_promtool_tests():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: prometheus)")
    done = subprocess.run([promtool, "test", "rules", "ipsadmin-alerts.test.yml"], cwd=DEPLOY / "prometheus",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "IpsadminDatabaseDown" in (DEPLOY / "prometheus" / "ipsadmin-alerts.test.yml").read_text()


@pytest.mark.parametrize("cores,workers", [(1, 3), (2, 5), (4, 9), (64, 9)])
def test_gunicorns_default_workers_are_capped(monkeypatch, cores, workers):
    """2 per core + 1, at most 9: the affinity ignores a container's CPU quota, and each worker keeps a database
    connection (R1 review, M8). GUNICORN_WORKERS says more when wanted."""
    import os
    import runpy

    monkeypatch.delenv("GUNICORN_WORKERS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert runpy.run_path(str(BASE_DIR / "ipsadmin" / "gunicorn.conf.py"))["workers"] == workers
    monkeypatch.setenv("GUNICORN_WORKERS", "20")
    assert runpy.run_path(str(BASE_DIR / "ipsadmin" / "gunicorn.conf.py"))["workers"] == 20
