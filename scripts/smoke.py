"""Check a deployed ipsadmin from outside; one line per check, exit 0 when every check passes.

    .venv/bin/python scripts/smoke.py https://ipsadmin.example.com \\
        --ops-url http://10.0.0.11:9180 --metrics-token "$METRICS_TOKEN"

Checks, in order:

- login page: ``/accounts/login/`` answers 200 with the sign-in form (no redirect, no DEBUG page);
- its security headers: HSTS (over https, at least a day), a Content-Security-Policy (``default-src`` and
  no ``'unsafe-inline'`` script), ``X-Content-Type-Options: nosniff``, a ``Referrer-Policy`` that keeps
  paths in the site, framing refused (``X-Frame-Options`` or CSP ``frame-ancestors``), and its cookies
  ``Secure`` over https;
- a static file the login page links to: 200, cached at least 30 days, ``nosniff``;
- ``/readyz``: 200 and ``"ready": true`` (else the reasons of the checks that fail; a body that is not
  readiness JSON fails, with its first characters);
- ``/metrics``: with the token, 200 in Prometheus text with ipsadmin's metrics; without it, refused (unless
  ``--metrics-allowed``: this machine is in METRICS_ALLOW, and the token cannot be told from here);
- with ``--ops-url``: the public site answers 404 to ``/readyz`` and ``/metrics`` (the proxy keeps them off).

A plain ``http://`` site fails the HSTS and cookies checks (no TLS is no deploy) unless ``--allow-http``
(a test setup behind no proxy): then they are not checked.

``--ops-url`` is where ``/readyz`` and ``/metrics`` are asked when the proxy keeps them off the public
site (deploy/nginx-ipsadmin.conf's ops server); by default the site itself. ``--ca`` trusts a CA file
(a self-signed certificate); ``--metrics-token`` defaults to $METRICS_TOKEN. Standard library and
requests only (the project's dependency), so it runs from any machine with them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

#: One day: less is a test setting left in production (SECURE_HSTS_SECONDS).
MIN_HSTS_SECONDS = 86400
#: A static file with a content hash in its name is cached for good; 30 days is the least we call "long".
MIN_STATIC_MAX_AGE = 30 * 86400
#: Referrer policies that never send a path of the dashboard to another site over http.
SAFE_REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin",
                          "origin", "origin-when-cross-origin"}
#: A metric every ipsadmin exposes (jobs/metrics.py), read at scrape time even when nothing was counted.
METRIC_SAMPLE = "ipsadmin_runs_followed"


@dataclass
class Result:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


class Smoke:
    def __init__(self, base: str, ops: str | None, token: str, verify, timeout: float, allow_http: bool = False,
                 metrics_allowed: bool = False):
        self.base = base.rstrip("/") + "/"
        self.ops = (ops or base).rstrip("/") + "/"
        self.separate_ops = bool(ops) and self.ops != self.base
        self.token = token
        self.allow_http = allow_http
        self.metrics_allowed = metrics_allowed
        self.https = urlsplit(self.base).scheme == "https"
        self.timeout = timeout
        self.session = requests.Session()
        # Not from the environment: REQUESTS_CA_BUNDLE would silently replace --ca.
        self.session.trust_env = False
        self.verify = verify
        self.results: list[Result] = []

    def get(self, url: str, **kwargs) -> requests.Response:
        return self.session.get(url, timeout=self.timeout, verify=self.verify, allow_redirects=False, **kwargs)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.results.append(Result(name, ok, detail))
        return ok

    def run(self) -> list[Result]:
        page = self.login_page()
        if page is not None:
            self.security_headers(page)
            self.static_file(page)
        self.readyz()
        self.metrics()
        if self.separate_ops:
            self.public_hides_ops()
        return self.results

    # --- the public site ---------------------------------------------------------------------

    def login_page(self) -> requests.Response | None:
        url = urljoin(self.base, "accounts/login/")
        try:
            started = time.monotonic()
            response = self.get(url)
            ms = (time.monotonic() - started) * 1000
        except requests.RequestException as error:
            self.check("login page", False, f"{url}: {type(error).__name__}: {error}")
            return None
        if response.status_code != 200:
            where = response.headers.get("Location", "")
            self.check("login page", False, f"{url} answered {response.status_code}{' to ' + where if where else ''}")
            return None
        if 'name="password"' not in response.text:
            self.check("login page", False, f"{url} answered 200 without a sign-in form")
            return None
        if "Traceback" in response.text or "DEBUG = True" in response.text:
            self.check("login page", False, f"{url} is a DEBUG page")
            return None
        self.check("login page", True, f"200 in {ms:.0f} ms")
        return response

    def security_headers(self, page: requests.Response) -> None:
        h = page.headers
        if self.https:
            hsts = h.get("Strict-Transport-Security", "")
            found = re.search(r"max-age=(\d+)", hsts)
            age = int(found.group(1)) if found else 0
            self.check("HSTS", age >= MIN_HSTS_SECONDS,
                       hsts if age >= MIN_HSTS_SECONDS else f"max-age {age} s (at least {MIN_HSTS_SECONDS}): {hsts!r}")
        elif self.allow_http:
            self.check("HSTS", True, "not checked over http (--allow-http); check the https site")
        else:
            self.check("HSTS", False, "the site is plain http: no TLS, no HSTS (--allow-http for a test setup)")

        csp = h.get("Content-Security-Policy", "")
        directives = {d.split()[0].lower(): d.split()[1:] for d in csp.split(";") if d.strip()}
        script = directives.get("script-src", directives.get("default-src", []))
        csp_ok = "default-src" in directives and "'unsafe-inline'" not in script
        self.check("CSP", csp_ok, "default-src set, no inline script" if csp_ok else f"missing or weak: {csp!r}")

        nosniff = h.get("X-Content-Type-Options", "").lower() == "nosniff"
        self.check("X-Content-Type-Options", nosniff, h.get("X-Content-Type-Options", "missing"))

        policy = h.get("Referrer-Policy", "")
        strictest = policy.split(",")[-1].strip().lower()  # browsers apply the last one they know
        self.check("Referrer-Policy", strictest in SAFE_REFERRER_POLICIES, policy or "missing")

        xfo = h.get("X-Frame-Options", "").upper()
        ancestors = directives.get("frame-ancestors")
        framing_ok = xfo in ("DENY", "SAMEORIGIN") or ancestors in (["'none'"], ["'self'"])
        self.check("framing", framing_ok,
                   f"X-Frame-Options {xfo or 'missing'}, frame-ancestors {' '.join(ancestors or []) or 'missing'}")

        if not self.https:
            self.check("cookies", self.allow_http, "not checked over http (--allow-http)" if self.allow_http
                       else "the site is plain http: cookies travel in clear (--allow-http for a test setup)")
        else:
            cookies = page.raw.headers.getlist("Set-Cookie")
            insecure = [c.split("=", 1)[0] for c in cookies
                        if "secure" not in [a.strip().lower() for a in c.split(";")[1:]]]
            self.check("cookies", not insecure,
                       f"{len(cookies)} set, all Secure" if not insecure else f"not Secure: {', '.join(insecure)}")

    def static_file(self, page: requests.Response) -> None:
        found = re.search(r'(?:href|src)="([^"]*/static/[^"]+)"', page.text)
        if not found:
            self.check("static file", False, "the login page links to no static file")
            return
        url = urljoin(page.url, found.group(1))
        try:
            response = self.get(url, headers={"Accept-Encoding": "gzip"})
        except requests.RequestException as error:
            self.check("static file", False, f"{url}: {type(error).__name__}: {error}")
            return
        control = response.headers.get("Cache-Control", "")
        age = re.search(r"max-age=(\d+)", control)
        seconds = int(age.group(1)) if age else 0
        problems = []
        if response.status_code != 200:
            problems.append(f"answered {response.status_code}")
        if seconds < MIN_STATIC_MAX_AGE:
            problems.append(f"cached {seconds} s (at least {MIN_STATIC_MAX_AGE}): {control!r}")
        if response.headers.get("X-Content-Type-Options", "").lower() != "nosniff":
            problems.append("no nosniff")
        path = urlsplit(url).path
        self.check("static file", not problems,
                   "; ".join(problems) if problems else f"{path}: 200, max-age {seconds} s")

    # --- the operators' endpoints -----------------------------------------------------------

    def readyz(self) -> None:
        url = urljoin(self.ops, "readyz")
        try:
            response = self.get(url)
            body = response.json()
        except (requests.RequestException, ValueError) as error:
            self.check("readyz", False, f"{url}: {type(error).__name__}: {error}")
            return
        checks = body.get("checks") if isinstance(body, dict) else None
        if not isinstance(checks, dict) or not all(isinstance(c, dict) for c in checks.values()):
            self.check("readyz", False, f"{url} answered {response.status_code}, not readiness JSON: "
                                        f"{response.text[:80]!r}")
            return
        if response.status_code == 200 and body.get("ready") is True:
            self.check("readyz", True, "ready (" + ", ".join(sorted(checks)) + ")")
            return
        reasons = [f"{name}: {check.get('reason', 'not ok')}" for name, check in checks.items() if not check.get("ok")]
        self.check("readyz", False, f"{response.status_code}, not ready: " + ("; ".join(reasons) or str(body)))

    def metrics(self) -> None:
        url = urljoin(self.ops, "metrics")
        try:
            anonymous = self.get(url)
            with_token = self.get(url, headers={"Authorization": f"Bearer {self.token}"}) if self.token else None
        except requests.RequestException as error:
            self.check("metrics", False, f"{url}: {type(error).__name__}: {error}")
            return
        open_here = anonymous.status_code == 200
        if with_token is None:
            served = open_here and METRIC_SAMPLE in anonymous.text
            self.check("metrics", served, f"no token given; without one: {anonymous.status_code}"
                       + ("" if served else " (give --metrics-token or $METRICS_TOKEN)"))
        else:
            served = (with_token.status_code == 200 and METRIC_SAMPLE in with_token.text
                      and with_token.headers.get("Content-Type", "").startswith("text/plain"))
            samples = sum(1 for line in with_token.text.splitlines() if line.startswith("ipsadmin_"))
            if served and open_here:
                # Served without it too: a wrong token would pass the same; the token says nothing here.
                self.check("metrics", self.metrics_allowed,
                           f"with the token: 200, {samples} ipsadmin samples; served without it too, so the token "
                           "was not checked" + (" (--metrics-allowed)" if self.metrics_allowed else ""))
            else:
                self.check("metrics", served, f"with the token: {with_token.status_code}"
                           + (f", {samples} ipsadmin samples" if served else f", {with_token.text[:80]!r}"))
        if open_here:
            self.check("metrics without token", self.metrics_allowed,
                       "answered 200: this address is in METRICS_ALLOW (--metrics-allowed)" if self.metrics_allowed
                       else "answered 200: this address is in METRICS_ALLOW, or they are open to anyone")
        else:
            self.check("metrics without token", True, f"refused ({anonymous.status_code})")

    def public_hides_ops(self) -> None:
        """With an ops server, the public site keeps /readyz and /metrics to itself (404)."""
        answered = {}
        for path in ("readyz", "metrics"):
            try:
                answered[path] = self.get(urljoin(self.base, path)).status_code
            except requests.RequestException as error:
                answered[path] = type(error).__name__
        hidden = all(code == 404 for code in answered.values())
        self.check("ops endpoints off the public site", hidden,
                   ", ".join(f"/{path}: {code}" for path, code in answered.items())
                   + ("" if hidden else " (deploy/nginx-ipsadmin.conf answers 404 to both)"))


def _resolve(entries: list[str]) -> None:
    """HOST:PORT:ADDRESS: connections to HOST:PORT go to ADDRESS; TLS still checks the certificate for HOST."""
    import urllib3.util.connection as connection

    table = {}
    for entry in entries:
        host, port, address = entry.rsplit(":", 2) if entry.count(":") == 2 else (None, None, None)
        if not host:
            raise SystemExit(f"--resolve {entry!r}: write HOST:PORT:ADDRESS")
        table[(host.lower(), int(port))] = address
    create = connection.create_connection

    def create_connection(address, *args, **kwargs):
        host, port = address
        return create((table.get((host.lower(), port), host), port), *args, **kwargs)

    connection.create_connection = create_connection


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the dashboard as its users reach it, e.g. https://ipsadmin.example.com")
    parser.add_argument("--ops-url", help="where /readyz and /metrics answer, if not on the public site")
    parser.add_argument("--metrics-token", default=os.environ.get("METRICS_TOKEN", ""),
                        help="the bearer token of /metrics (default: $METRICS_TOKEN)")
    parser.add_argument("--ca", help="a CA bundle to trust (a self-signed certificate)")
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument("--allow-http", action="store_true",
                        help="a plain http site (a test setup): HSTS and cookies not checked instead of failed")
    parser.add_argument("--metrics-allowed", action="store_true",
                        help="this machine is in METRICS_ALLOW: /metrics served without the token is expected")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    parser.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDRESS",
                        help="connect to ADDRESS for HOST:PORT (a new server before DNS points at it), as curl's")
    args = parser.parse_args(argv)
    if args.resolve:
        _resolve(args.resolve)
    verify = False if args.insecure else (args.ca or True)
    if args.insecure:
        import urllib3

        urllib3.disable_warnings()
    results = Smoke(args.url, args.ops_url, args.metrics_token, verify, args.timeout, allow_http=args.allow_http,
                    metrics_allowed=args.metrics_allowed).run()
    for result in results:
        print(result.line(), flush=True)
    failed = [r for r in results if not r.ok]
    summary = f"{len(results) - len(failed)} of {len(results)} checks passed"
    print(summary + (f"; failed: {', '.join(r.name for r in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
