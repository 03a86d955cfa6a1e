"""scripts/smoke.py against a real deploy: gunicorn under production settings, over TLS, as the app's role.

The server is started as docs/deploy.md starts it (``gunicorn -c ipsadmin/gunicorn.conf.py``, DEBUG off,
fresh keys, static files collected into its own STATIC_ROOT, metrics in a multiprocess directory), with
its own certificate (gunicorn speaks TLS itself here, in place of nginx). The task worker and the watcher
are real processes too (``db_worker --batch``, ``watch_ips --once`` against the emulator over HTTP): that
is what makes /readyz ready. A stub server with none of the headers shows every check can fail.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings

from .conftest import free_port, wait_for
from .pg_roles import app_database_url  # noqa: F401  (fixture)

BASE_DIR = Path(settings.BASE_DIR)
PYTHON = sys.executable
SMOKE = BASE_DIR / "scripts" / "smoke.py"
#: Every check smoke.py makes of a healthy https deploy, in its order.
CHECKS = ["login page", "HSTS", "CSP", "X-Content-Type-Options", "Referrer-Policy", "framing", "cookies",
          "static file", "readyz", "metrics", "metrics without token"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def static_root(tmp_path_factory) -> Path:
    """`manage.py collectstatic` under production settings, into a STATIC_ROOT of this module's own."""
    root = tmp_path_factory.mktemp("static")
    env = _production_env(port=0, database_url="sqlite:///:memory:", STATIC_ROOT=str(root))
    done = subprocess.run([PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "staticfiles.json").is_file()
    return root


def _production_env(port: int, database_url: str, **more: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "METRICS_", "PROMETHEUS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="ipsadmin.settings", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(64),
        IPSADMIN_ENCRYPTION_KEY=Fernet.generate_key().decode(), ALLOWED_HOSTS="127.0.0.1",
        CSRF_TRUSTED_ORIGINS=f"https://127.0.0.1:{port}", SITE_URL=f"https://127.0.0.1:{port}",
        DATABASE_URL=database_url, GUNICORN_WORKERS="2", **more,
    )
    return env


class Deploy:
    def __init__(self, url: str, env: dict, cert: Path, token: str):
        self.url, self.env, self.cert, self.token = url, env, cert, token

    def manage(self, *args: str) -> str:
        done = subprocess.run([PYTHON, "manage.py", *args], cwd=BASE_DIR, env=self.env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def smoke(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, str(SMOKE), self.url, "--ca", str(self.cert), *args], cwd=BASE_DIR,
                              capture_output=True, text=True, timeout=120)


@pytest.fixture
def deploy(transactional_db, app_database_url, company, certificate, static_root, tmp_path):
    """A production-settings gunicorn (2 workers, TLS) on the test database as the app's role, with one
    company on the emulator; stopped (master and workers) after the test."""
    cert, key = certificate
    port, token = free_port(), secrets.token_urlsafe(32)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = _production_env(port, app_database_url, STATIC_ROOT=str(static_root), METRICS_TOKEN=token,
                          PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "-c", "ipsadmin/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
             "--certfile", str(cert), "--keyfile", str(key), "--control-socket", str(tmp_path / "gunicorn.ctl"),
             "ipsadmin.wsgi"],
            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"https://127.0.0.1:{port}"

    def healthy():
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            return requests.get(url + "/healthz", verify=str(cert), timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(healthy, f"gunicorn on port {port} to answer /healthz over TLS", timeout=60)
        yield Deploy(url, env, cert, token)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _lines(done: subprocess.CompletedProcess) -> dict[str, str]:
    """smoke.py's check lines by check name: {"login page": "ok   login page: 200 in 31 ms", ...}."""
    lines = {}
    for line in done.stdout.splitlines():
        if line.startswith(("ok   ", "FAIL ")) and ": " in line:
            lines[line[5:].split(": ", 1)[0]] = line
    return lines


def test_smoke_passes_against_a_production_deploy_with_a_worker_and_a_watcher(deploy):
    # What a deploy does after migrate: the chores started, a task worker runs them; the watcher looks.
    deploy.manage("start_chores")
    deploy.manage("db_worker", "--batch", "--no-startup-delay")
    deploy.manage("watch_ips", "--once", "--owner", "smoke-test")

    done = deploy.smoke("--metrics-token", deploy.token)

    lines = _lines(done)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(lines) == CHECKS, done.stdout
    assert all(line.startswith("ok   ") for line in lines.values()), done.stdout
    assert "max-age=31536000" in lines["HSTS"]
    assert "ready (database, ips, migrations, watcher, worker)" in lines["readyz"]
    assert "refused (403)" in lines["metrics without token"]
    assert done.stdout.rstrip().endswith(f"{len(CHECKS)} of {len(CHECKS)} checks passed")


def test_smoke_fails_with_the_reason_when_no_worker_ran_and_the_token_is_wrong(deploy):
    deploy.manage("start_chores")  # queued, but no worker takes them
    deploy.manage("watch_ips", "--once", "--owner", "smoke-test")

    done = deploy.smoke("--metrics-token", "x" * 32)

    lines = _lines(done)
    assert done.returncode == 1, done.stdout + done.stderr
    assert lines["readyz"].startswith("FAIL readyz: 503, not ready: worker: no task worker seen"), done.stdout
    assert lines["metrics"].startswith("FAIL metrics: with the token: 403"), done.stdout
    # The rest of the deploy is fine, and says so.
    for name in ("login page", "HSTS", "CSP", "static file", "metrics without token"):
        assert lines[name].startswith("ok   "), done.stdout
    assert "failed: readyz, metrics" in done.stdout


# --- Each check can fail: a server that sends none of what a deploy must --------------------------


class _Careless(http.server.BaseHTTPRequestHandler):
    """A site with a sign-in form and nothing else right: no security headers, an insecure cookie, a
    static file cached a minute, not ready, metrics open to anyone."""

    def do_GET(self):
        if self.path == "/accounts/login/":
            self._send(200, "text/html", b'<link href="/static/site.css"><form><input name="password"></form>',
                       {"Set-Cookie": "csrftoken=abc; Path=/", "Referrer-Policy": "unsafe-url"})
        elif self.path == "/static/site.css":
            self._send(200, "text/css", b"body{}", {"Cache-Control": "max-age=60"})
        elif self.path == "/readyz":
            body = {"ready": False, "checks": {"database": {"ok": True},
                                               "worker": {"ok": False, "reason": "no task worker seen for 999 s"}}}
            self._send(503, "application/json", json.dumps(body).encode())
        elif self.path == "/metrics":
            self._send(200, "text/plain", b"ipsadmin_runs_followed 0\n")
        else:
            self._send(404, "text/plain", b"")

    def _send(self, status, content_type, body, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def careless_site(certificate):
    cert, key = certificate
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Careless)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def test_every_check_fails_against_a_site_without_what_a_deploy_must_send(careless_site):
    url, cert = careless_site
    done = subprocess.run([PYTHON, str(SMOKE), url, "--ca", str(cert), "--metrics-token", "t" * 32],
                          cwd=BASE_DIR, capture_output=True, text=True, timeout=60)

    lines = _lines(done)
    assert done.returncode == 1, done.stdout + done.stderr
    assert lines["login page"].startswith("ok   "), done.stdout
    failing = {name for name, line in lines.items() if line.startswith("FAIL ")}
    assert failing == set(CHECKS) - {"login page"}, done.stdout
    assert "not Secure: csrftoken" in lines["cookies"]
    assert "cached 60 s" in lines["static file"]
    assert "worker: no task worker seen for 999 s" in lines["readyz"]
    assert "answered 200" in lines["metrics without token"]
    # Open metrics answer any token: that one answered says nothing of the token.
    assert "served without it too, so the token was not checked" in lines["metrics"]


class _Hidden(_Careless):
    """The public site of a deploy with an ops server: /readyz and /metrics are 404 there."""

    def do_GET(self):
        if self.path in ("/readyz", "/metrics"):
            self._send(404, "text/plain", b"")
        else:
            super().do_GET()


class _NotJson(_Careless):
    """A /readyz that answers something else than readiness JSON (a proxy's page, a JSON list)."""

    def do_GET(self):
        if self.path == "/readyz":
            self._send(200, "application/json", b'["ready"]')
        else:
            super().do_GET()


def _serve(handler, certificate=None):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if certificate is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"{'https' if certificate else 'http'}://127.0.0.1:{server.server_address[1]}"


def _smoke(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "METRICS_TOKEN"}
    return subprocess.run([PYTHON, str(SMOKE), *args], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_plain_http_site_fails_hsts_and_cookies_unless_allowed():
    server, url = _serve(_Careless)
    try:
        strict, allowed = _smoke(url, "--metrics-allowed"), _smoke(url, "--metrics-allowed", "--allow-http")
    finally:
        server.shutdown()
        server.server_close()
    lines = _lines(strict)
    assert lines["HSTS"].startswith("FAIL HSTS: the site is plain http"), strict.stdout
    assert lines["cookies"].startswith("FAIL cookies: the site is plain http"), strict.stdout
    lines = _lines(allowed)
    assert lines["HSTS"].startswith("ok   HSTS: not checked over http (--allow-http)"), allowed.stdout
    assert lines["cookies"].startswith("ok   cookies: not checked"), allowed.stdout
    # No token, metrics open, this machine declared allowed: both metrics lines pass.
    assert lines["metrics"].startswith("ok   metrics: no token given; without one: 200"), allowed.stdout
    assert lines["metrics without token"].startswith("ok   "), allowed.stdout


def test_with_an_ops_server_the_public_site_must_hide_readyz_and_metrics(certificate):
    public, public_url = _serve(_Careless, certificate)
    hidden, hidden_url = _serve(_Hidden, certificate)
    ops, ops_url = _serve(_Careless)
    try:
        shown = _smoke(public_url, "--ca", str(certificate[0]), "--ops-url", ops_url, "--metrics-allowed")
        kept = _smoke(hidden_url, "--ca", str(certificate[0]), "--ops-url", ops_url, "--metrics-allowed")
    finally:
        for server in (public, hidden, ops):
            server.shutdown()
            server.server_close()
    line = _lines(shown)["ops endpoints off the public site"]
    assert line == "FAIL ops endpoints off the public site: /readyz: 503, /metrics: 200 (deploy/nginx-ipsadmin.conf " \
                   "answers 404 to both)", shown.stdout
    assert _lines(kept)["ops endpoints off the public site"] == (
        "ok   ops endpoints off the public site: /readyz: 404, /metrics: 404"), kept.stdout


def test_a_readyz_that_is_not_readiness_json_is_a_failing_line_not_a_traceback():
    server, url = _serve(_NotJson)
    try:
        done = _smoke(url, "--allow-http", "--metrics-allowed")
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in done.stderr, done.stderr
    assert _lines(done)["readyz"].startswith("FAIL readyz: ") and "not readiness JSON: '[\"ready\"]'" in done.stdout


def test_a_site_that_does_not_answer_is_one_failing_line_per_check_not_a_traceback():
    env = {k: v for k, v in os.environ.items() if k != "METRICS_TOKEN"}
    done = subprocess.run([PYTHON, str(SMOKE), f"https://127.0.0.1:{free_port()}", "--timeout", "2"],
                          cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines()[:-1]] == [
        "FAIL login page", "FAIL readyz", "FAIL metrics"]
