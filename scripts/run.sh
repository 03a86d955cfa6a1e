#!/usr/bin/env bash
# `make run`: the dashboard with the IPS emulator and demo data, on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EMULATOR_PORT=${EMULATOR_PORT:-8081}
PORT=${PORT:-8000}
export DEBUG=${DEBUG:-1}
unset DATABASE_URL  # the demo runs on its own SQLite file

"$PY" manage.py migrate --noinput -v 0

"$PY" manage.py ipsemulator --host 127.0.0.1 --port "$EMULATOR_PORT" &
EMULATOR_PID=$!
trap 'kill $EMULATOR_PID 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 50); do
    if "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "http://127.0.0.1:$EMULATOR_PORT/scene7/webservice/IpsApi.wsdl" 2>/dev/null; then
        break
    fi
    sleep 0.2
done

"$PY" manage.py load_demo --service-url "http://127.0.0.1:$EMULATOR_PORT/scene7/services/IpsApiService"

cat <<MSG

  ipsadmin is running at http://127.0.0.1:$PORT/   (IPS emulator on port $EMULATOR_PORT)

  Log in with password "demo" as:
    ipsuser           may run jobs in company 47
    ipscompanyadmin   may list jobs, but not run them (executeJob)
    imageportaluser   may see history, but not list or run jobs
    webserviceuser    may do none of it
    admin             superuser (acts as IpsAdmin everywhere), Django admin at /admin/
  (one user per IPS user type: see README.md)

  Ctrl-C stops both.

MSG
"$PY" -m gunicorn -c ipsadmin/gunicorn.conf.py --bind "127.0.0.1:$PORT" ipsadmin.wsgi
