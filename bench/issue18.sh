#!/usr/bin/env bash
# Issue 18's benches side by side, in one run, each log kept: the jobs page, a press, sign-in with IPS,
# the 1M-row export; History's pairs with HISTORY=1 (long: it builds 1M-row databases unless kept).
# Usage: bench/issue18.sh [LOGDIR]   (default var/bench-issue18-<time>); a bench that fails is said, the rest go on.
# The export reuses a 1M-row database when one is there (bench/export_bg.py --fresh loads it again).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PG=${PG_URL:-postgres://postgres@127.0.0.1:5432}
LOG=${1:-var/bench-issue18-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$LOG"
run() { local name=$1; shift; echo "== $name: $* (load: $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$LOG/summary.txt"
        "$@" >"$LOG/$name.log" 2>&1 || echo "FAILED: exit $? (see $LOG/$name.log)" | tee -a "$LOG/summary.txt"
        grep -v '^{"time"' "$LOG/$name.log" | tail -n 12 | tee -a "$LOG/summary.txt"; }
run jobs_page_pg     $PY bench/jobs_page.py --database-url "$PG/ipsadmin_bench_jobs_page"
run jobs_page_sqlite $PY bench/jobs_page.py --database-url sqlite://
run press_pg         $PY bench/run_burst.py --database-url "$PG/ipsadmin_bench_run_burst"
run press_sqlite     $PY bench/run_burst.py --database-url sqlite://
run sign_in_pg       $PY bench/sign_in.py
run sign_in_sqlite   $PY bench/sign_in.py --database-url sqlite://
run export_pg        $PY bench/export_bg.py --rows 1000000 --runs 1 --database-url "$PG/ipsadmin_b_bench"
run export_sqlite    $PY bench/export_bg.py --rows 1000000 --runs 1 --database-url sqlite://
if [ "${HISTORY:-0}" = 1 ]; then
  run history_pg     $PY bench/history_pairs.py --reuse --keep --repeat 5
  run history_sqlite $PY bench/history_pairs.py --reuse --keep --repeat 5 --database-url sqlite://
fi
echo "logs in $LOG"
