#!/usr/bin/env bash
# `make run`: the dashboard with the IPS emulator, demo data and the task
# worker that follows every accepted run to its IPS result, on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EMULATOR_PORT=${EMULATOR_PORT:-8081}
PORT=${PORT:-8000}
export DEBUG=${DEBUG:-1}
unset DATABASE_URL  # the demo runs on its own SQLite file
export TASKS_BACKEND=db  # SQLite: one db_worker (docs/deploy.md)

"$PY" manage.py migrate --noinput -v 0

PIDS=()
# Ctrl-C reaches gunicorn; the emulator and the worker are stopped here.
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT INT TERM

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

# The background worker: polls IPS for every accepted run until its log is
# final, and writes the result on the history row, with or without a browser.
# --no-reload: one process, stopped by the trap above (DEBUG would reload).
"$PY" manage.py db_worker --no-reload &
PIDS+=($!)

cat <<MSG

  ipsadmin is running at http://127.0.0.1:$PORT/   (IPS emulator on port $EMULATOR_PORT,
  task worker: manage.py db_worker)

  Sign in with IPS as <user type>@example.com, e.g. ipsuser@example.com
  (your companies and user types are read from the emulator), or with the
  local accounts below. Every password is "demo":
    ipsuser           may run jobs in company 47
    ipscompanyadmin   may list jobs, but not run them (executeJob)
    imageportaluser   may see history, but not list or run jobs
    webserviceuser    may do none of it
    admin             superuser (acts as IpsAdmin everywhere), Django admin at /admin/
  (one user per IPS user type: see README.md)

  Ctrl-C stops all three.

MSG
"$PY" -m gunicorn -c ipsadmin/gunicorn.conf.py --bind "127.0.0.1:$PORT" ipsadmin.wsgi
