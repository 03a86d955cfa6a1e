"""What writing the CSV export's cells costs, in-process: a micro-benchmark.

Builds a realistic mix of export rows (the 30 columns of EXPORT_COLUMNS, as
``chunks`` reads them: ids, times, counts, and 14 text cells), then times
``_cell`` over every cell of every row (what ``export_rows`` does per row, the
database left out), and the text cells alone. The mix, fixed by a seed: most
rows plain ASCII, some with accented Latin names, some in Japanese, about one
in a hundred with a formula start or a bidi control (the cells the export
defuses). It prints the best of ``--repeat`` runs in CPU time of the process
(time.process_time: on a shared machine, other work counts less than in wall
time), per row and per million rows, and a digest of every cell written: the same digest before and after a
change means the same cells.

No database, no server: django.setup() only, to import the module.
Run: .venv/bin/python bench/csv_cells.py [--rows 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import random
import sys
import time
import zoneinfo
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")

import django  # noqa: E402

django.setup()

try:
    from jobs.csvexport import EXPORT_COLUMNS, _cell  # noqa: E402
except ImportError:  # before the export had a module of its own (commit a3faf77)
    from jobs.history import EXPORT_COLUMNS, _cell  # noqa: E402

SEED = 20261129
ZONE = zoneinfo.ZoneInfo("Europe/Berlin")

PLAIN = {
    "company": ["Demo Company", "Nordic Retail", "Acme Logistics Ltd"],
    "job": ["Nightly import", "Export Q3 - summary, final", "Customers sync (EU)", "Invoices 2026-11", "a=b check"],
    "user": ["ipsuser", "j.smith", "admin", "svc-batch"],
    "message": ["", "Job started", "IPS answered: fault 30000; the job is already running", "Stopped by user"],
    "reason": ["", "Job is already running", "Not authorised for this operation"],
}
ACCENTED = {
    "company": ["Café Zürich", "Société Générale Søn", "Müller & Söhne GmbH"],
    "job": ["Réconciliation clients", "Überweisungen – täglich", "Año fiscal 2026"],
    "user": ["j.müller", "élodie", "søren"],
    "message": ["Démarré", "Zugriff verweigert: Benutzer hat keine Berechtigung"],
    "reason": ["Tâche déjà en cours", "Zeitüberschreitung"],
}
JAPANESE = {
    "company": ["株式会社テスト", "東京ロジスティクス"],
    "job": ["データ移行", "月次レポート（最終）", "顧客同期・EU"],
    "user": ["山田", "suzuki"],
    "message": ["ジョブを開始しました", "タイムアウト"],
    "reason": ["ジョブは実行中です", ""],
}
RISKY = {
    "job": ['=HYPERLINK("http://evil.example/","x")', "Invoice \u202egpj.exe", "\uff1d1+1", "Report;=1+1",
            "+1 cmd|' /C calc'!A0", "\u3000+1+1"],
    "message": ["@SUM(1+1)", "Report\n-1+1", "a\u200fb\u061cc"],
}


def make_rows(n: int) -> list[tuple]:
    rnd = random.Random(SEED)
    fields = [f for _, f in EXPORT_COLUMNS]
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(n):
        draw = rnd.random()
        kind = PLAIN if draw < 0.80 else ACCENTED if draw < 0.92 else JAPANESE if draw < 0.99 else RISKY

        def text(key):
            return rnd.choice(kind.get(key) or PLAIN[key])

        at = start + dt.timedelta(seconds=37 * i, microseconds=rnd.randrange(1_000_000))
        finished = rnd.random() < 0.9
        values = {
            "id": 1_000_000 + i,
            "requested_at": at,
            "operation": rnd.choice(["executeJob", "stopJob", "getJobLogs"]),
            "company_handle": rnd.choice(["47", "48", "52"]),
            "company_id": text("company"),  # the company's name, as export_rows writes it
            "job_name": text("job"),
            "job_handle": f"job-{rnd.randrange(2000):05d}",
            "username": text("user"),
            "role": rnd.choice(["IpsUser", "IpsAdmin", "TrialSiteUser"]),
            "outcome": rnd.choice(["accepted", "accepted", "accepted", "refused", "denied"]),
            "message": text("message"),
            "fault_code": rnd.choice([None, None, None, 30000]),
            "fault_reason": text("reason"),
            "sent_at": at + dt.timedelta(milliseconds=3),
            "finished_at": at + dt.timedelta(milliseconds=40) if finished else None,
            "duration_ms": rnd.randrange(10, 400),
            "ips_run_name": f"Run {at:%Y-%m-%d %H:%M:%S}" if finished else "",
            "ips_result": rnd.choice(["ok", "warnings", "errors"]) if finished else "",
            "ips_log_type": rnd.choice(["Import", "Export", ""]),
            "ips_success_count": rnd.randrange(1000),
            "ips_warning_count": rnd.randrange(10),
            "ips_error_count": rnd.randrange(5),
            "ips_duplicate_count": 0,
            "ips_update_count": rnd.randrange(100),
            "ips_total_count": rnd.randrange(2000),
            "ips_fatal": rnd.random() < 0.01,
            "ips_started_at": at + dt.timedelta(seconds=1) if finished else None,
            "ips_ended_at": at + dt.timedelta(seconds=60) if finished else None,
            "ips_runtime_ms": rnd.randrange(1000, 600_000) if finished else None,
            "request_id": "%032x" % rnd.getrandbits(128),
        }
        rows.append(tuple(values[f] for f in fields))
    return rows


def best_of(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        work()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = make_rows(args.rows)
    texts = [[v for v in row if isinstance(v, str)] for row in rows]
    n_text = sum(map(len, texts))
    non_ascii = sum(not v.isascii() for row in texts for v in row)

    def all_cells():
        for row in rows:
            [_cell(v, ZONE) for v in row]

    def text_cells():
        for row in texts:
            [_cell(v, ZONE) for v in row]

    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr([_cell(v, ZONE) for v in row]).encode())
    print(f"{args.rows} rows x {len(EXPORT_COLUMNS)} cells, {n_text / args.rows:.1f} text cells a row "
          f"({100 * non_ascii / n_text:.1f} % of them non-ASCII); best of {args.repeat}, CPU time; "
          f"Python {sys.version.split()[0]}")
    for label, work in (("every cell (_cell)", all_cells), ("text cells only", text_cells)):
        per_row = best_of(args.repeat, work) / args.rows
        print(f"{label:<20} {per_row * 1e6:8.2f} µs a row   {per_row * 1e6:8.1f} s a million rows")
    print(f"cells written: sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
