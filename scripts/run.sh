#!/usr/bin/env bash
# `make run`: the dashboard with the IPS emulator, demo data and the task
# worker that follows every accepted run to its IPS result, on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EMULATOR_PORT=${EMULATOR_PORT:-8081}
PORT=${PORT:-8000}
export DEBUG=${DEBUG:-1}
# Notification emails (printed on the console) link to this server's pages.
export SITE_URL=${SITE_URL:-http://127.0.0.1:$PORT}
unset DATABASE_URL  # the demo runs on its own SQLite file
export TASKS_BACKEND=db  # SQLite: one db_worker (docs/deploy.md)
# The demo's watcher looks every few seconds (production: 10 s busy, 60 s idle), so a run
# fired by the emulator's own schedule is in History within a minute.
export IPS_WATCH_INTERVAL=${IPS_WATCH_INTERVAL:-2}
export IPS_WATCH_IDLE_INTERVAL=${IPS_WATCH_IDLE_INTERVAL:-5}
# Metrics at /metrics (jobs/metrics.py): gunicorn's workers, the watcher and the task worker count into
# one directory; this machine reads them without a token.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/metrics}
export METRICS_ALLOW=${METRICS_ALLOW:-127.0.0.1,::1}
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

"$PY" manage.py migrate --noinput -v 0

PIDS=()
# Ctrl-C reaches gunicorn; the emulator and the worker are stopped here.
# Everything started here is in this script's process group, the restart loops' children too.
trap 'trap - EXIT INT TERM; kill 0 2>/dev/null || true' EXIT INT TERM

"$PY" manage.py ipsemulator --host 127.0.0.1 --port "$EMULATOR_PORT" &
PIDS+=($!)
for _ in $(seq 1 50); do
    if "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "http://127.0.0.1:$EMULATOR_PORT/scene7/webservice/IpsApi.wsdl" 2>/dev/null; then
        break
    fi
    sleep 0.2
done

"$PY" manage.py load_demo --service-url "http://127.0.0.1:$EMULATOR_PORT/scene7/services/IpsApiService"
"$PY" manage.py start_chores >/dev/null  # the refresh of memberships read from IPS

# keep_running CMD...: CMD started again whenever it exits (a crash, a kill), like a service
# manager would (scripts/keep_running.sh).
source scripts/keep_running.sh

# The watcher: one look per company per interval at what IPS runs and its job logs; every
# run (pressed here or by IPS's schedule) lands in History with its result, and each
# connection's jobs are synced on its interval.
keep_running "$PY" manage.py watch_ips &
PIDS+=($!)
# The task worker: the recurring chores (memberships read from IPS), exports.
# --no-reload: one process, stopped by the trap above (DEBUG would reload).
keep_running "$PY" manage.py db_worker --no-reload &
PIDS+=($!)

cat <<MSG

  ipsadmin is running at http://127.0.0.1:$PORT/   (IPS emulator on port $EMULATOR_PORT,
  watcher: manage.py watch_ips, task worker: manage.py db_worker)
  Health: /healthz, /readyz; Prometheus metrics: /metrics (from this machine)

  Sign in with IPS as <user type>@example.com, e.g. ipsuser@example.com
  (your companies and user types are read from the emulator), or with the
  local accounts below. Every password is "demo":
    ipsuser           may run jobs in company 47
    ipscompanyadmin   may list jobs, but not run them (executeJob)
    imageportaluser   may see history, but not list or run jobs
    webserviceuser    may do none of it
    admin             superuser (acts as IpsAdmin everywhere), Django admin at /admin/
  (one user per IPS user type: see README.md)

  Ctrl-C stops them all.

MSG
"$PY" -m gunicorn -c ipsadmin/gunicorn.conf.py --bind "127.0.0.1:$PORT" ipsadmin.wsgi
