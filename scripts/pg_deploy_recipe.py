"""Run docs/deploy.md's PostgreSQL recipe as written, from an empty database; exit 0 when it all works.

    .venv/bin/python scripts/pg_deploy_recipe.py postgres://postgres@127.0.0.1:5432/postgres

The URL is a superuser's. The recipe's SQL is read from docs/deploy.md itself
(its ```sql blocks under "PostgreSQL roles"), with fresh names for the owner,
the app's role and the database (``ipsadmin_owner_<token>``, …) so that runs in
parallel do not meet, and a fresh password for ``'…'``. Then, in order:

1. the superuser's block, on the server (``ipsadmin_prune`` is one per server:
   an existing one is kept, as the recipe says);
2. the owner's block before migrate, then ``manage.py migrate`` as the owner
   (a subprocess with its DATABASE_URL), then the owner's block after migrate;
3. as the app's role (a subprocess): what the dashboard writes (a refused
   press, a press sent and finished with its IPS result, an export, membership
   changes, a user and a company deleted), what it must not (prune, delete,
   TRUNCATE, a trigger of its own), and the system check database_role_check:
   no error;
4. as the owner: the check fails (it owns the tables), prune works;
5. the owner of another database, a member of ``ipsadmin_prune`` like every
   owner, cannot connect to this one (CONNECT is not PUBLIC's).

Everything made is dropped at the end (not ipsadmin_prune: other databases'
functions belong to it). ``--keep`` leaves it for a look.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_MD = ROOT / "docs" / "deploy.md"
SECTION = "## PostgreSQL roles"
#: The recipe's blocks, by what their first line says.
BLOCKS = {
    "superuser": "-- as a superuser",
    "before_migrate": "-- as ipsadmin_owner, in the database ipsadmin, before the first migrate",
    "after_migrate": "-- as ipsadmin_owner, in the database ipsadmin, after every migrate",
}


def recipe(text: str | None = None) -> dict[str, list[str]]:
    """The recipe's SQL statements, by block (BLOCKS), as docs/deploy.md writes them."""
    text = DEPLOY_MD.read_text() if text is None else text
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end >= 0 else None]
    found: dict[str, list[str]] = {}
    for block in re.findall(r"```sql\n(.*?)```", section, re.S):
        first = block.splitlines()[0].strip()
        [name] = [n for n, head in BLOCKS.items() if first.startswith(head)] or [None]
        if name is None:
            continue
        # Statements end with ';' at the end of a line (before any comment); no ';' inside strings here.
        lines = [re.sub(r"\s*--.*$", "", line) for line in block.splitlines()]
        statements = [" ".join(s.split()) for s in "\n".join(lines).split(";")]
        found[name] = [s for s in statements if s]
    missing = set(BLOCKS) - set(found)
    if missing:
        raise ValueError(f"docs/deploy.md lacks the recipe's blocks: {sorted(missing)}")
    return found


def named(statements: list[str], names: dict[str, str]) -> list[str]:
    """The statements with the recipe's names (ipsadmin_owner, ipsadmin_app, ipsadmin, '…') replaced."""
    out = []
    for statement in statements:
        statement = statement.replace("'…'", f"'{names['…']}'")
        for old, new in names.items():
            if old != "…":
                statement = re.sub(rf"\b{re.escape(old)}\b", new, statement)
        out.append(statement)
    return out


def _connect(url: str, dbname: str | None = None, user: str | None = None, password: str | None = None):
    import psycopg

    u = urlsplit(url)
    return psycopg.connect(
        host=u.hostname or "127.0.0.1", port=u.port or 5432, user=user or u.username or "postgres",
        password=password if user else u.password, dbname=dbname or (u.path.lstrip("/") or "postgres"),
        autocommit=True, connect_timeout=10,
    )


def _url(url: str, user: str, password: str, dbname: str) -> str:
    u = urlsplit(url)
    return f"postgres://{quote(user)}:{quote(password)}@{u.hostname or '127.0.0.1'}:{u.port or 5432}/{quote(dbname)}"


def _manage(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _self(database_url: str, mode: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "ipsadmin.settings"}
    return subprocess.run([sys.executable, __file__, "--as", mode], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def run(url: str, keep: bool = False, say=print) -> None:
    """The whole recipe from an empty database; raises on the first thing that fails."""
    import psycopg

    token = secrets.token_hex(4)
    names = {"ipsadmin_owner": f"ipsadmin_owner_{token}", "ipsadmin_app": f"ipsadmin_app_{token}",
             "ipsadmin": f"ipsadmin_{token}", "…": secrets.token_urlsafe(18)}
    owner, app, database, password = names["ipsadmin_owner"], names["ipsadmin_app"], names["ipsadmin"], names["…"]
    steps = {k: named(v, names) for k, v in recipe().items()}
    say(f"roles {owner}, {app}; database {database}")
    try:
        with _connect(url, dbname="postgres") as su:
            for statement in steps["superuser"]:
                try:
                    su.execute(statement)
                except psycopg.errors.DuplicateObject:
                    if not statement.startswith("CREATE ROLE ipsadmin_prune"):
                        raise
                    say("ipsadmin_prune exists already (one per server): kept")
        with _connect(url, dbname=database, user=owner, password=password) as conn:
            for statement in steps["before_migrate"]:
                conn.execute(statement)
        owner_url = _url(url, owner, password, database)
        app_url = _url(url, app, password, database)
        done = _manage(owner_url, "migrate", "--no-input")
        if done.returncode:
            raise RuntimeError(f"migrate as {owner} failed:\n{done.stdout}\n{done.stderr}")
        say("migrate as the owner: OK")
        with _connect(url, dbname=database, user=owner, password=password) as conn:
            for statement in steps["after_migrate"]:
                conn.execute(statement)
        for mode, role_url in (("app", app_url), ("owner", owner_url)):
            done = _self(role_url, mode)
            if done.returncode:
                raise RuntimeError(f"as the {mode} role:\n{done.stdout}\n{done.stderr}")
            say(done.stdout.strip())
        say(other_owner_refused(url, database, token))
    finally:
        if keep:
            say(f"kept: {database}, {owner}, {app}")
        else:
            with _connect(url, dbname="postgres") as su:
                su.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                su.execute(f'DROP ROLE IF EXISTS "{app}"')
                su.execute(f'DROP ROLE IF EXISTS "{owner}"')


def other_owner_refused(url: str, database: str, token: str) -> str:
    """The owner of another ipsadmin database of the server (a member of ipsadmin_prune too) cannot connect.

    Were it let in, it could SET ROLE ipsadmin_prune and delete this database's trail."""
    import psycopg

    other, password = f"ipsadmin_other_owner_{token}", secrets.token_urlsafe(18)
    with _connect(url, dbname="postgres") as su:
        su.execute(f'CREATE ROLE "{other}" LOGIN PASSWORD \'{password}\'')
        su.execute(f'GRANT ipsadmin_prune TO "{other}"')
    try:
        try:
            with _connect(url, dbname=database, user=other, password=password):
                pass
        except psycopg.OperationalError as exc:
            if "permission denied for database" not in str(exc):
                raise
        else:
            raise AssertionError(f"{other}, a member of ipsadmin_prune, connected to {database}")
    finally:
        with _connect(url, dbname="postgres") as su:
            su.execute(f'DROP ROLE IF EXISTS "{other}"')
    return f"another database's owner (a member of ipsadmin_prune): refused CONNECT to {database}"


# --- Inside Django, as one of the roles (a subprocess of run()) -------------------------


def _refused(what, attempt, expected=Exception):
    try:
        attempt()
    except expected:
        return
    raise AssertionError(f"{what}: not refused")


def as_app() -> str:
    """What the dashboard does as ipsadmin_app, and what it must not."""
    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.db import DatabaseError, connection, transaction
    from django.utils import timezone

    from jobs import checks
    from jobs.models import Company, Connection, Execution, HistoryExport, Job, MembershipChange
    from jobs.services import base, exports, people, press

    problems = checks.database_role_check()
    assert problems == [], problems
    User = get_user_model()
    admin = User.objects.create_superuser("recipe-admin", password="x-" + secrets.token_hex(8))
    user = User.objects.create_user("recipe-user", password="x-" + secrets.token_hex(8))
    ips = Connection(name="Recipe", region=Connection.Region.CUSTOM, username="service@example.com",
                     service_url="https://ips.example.com/scene7/services/IpsApiService")
    ips.set_password("recipe")
    ips.save()
    company = Company.objects.create(connection=ips, handle="47", name="Recipe Company")
    job = Job.objects.create(company=company, handle="47|Recipe|", name="Recipe", type="ImageServingPublishJob")
    people.change_membership(admin, user, company, "IpsUser", MembershipChange.Source.ADMIN)

    # A press refused here, and one sent, finished and followed to its result: the service's writes.
    refused = Execution(job=job, company=company, company_handle="47", job_handle=job.handle, job_name=job.name,
                        user=user, username=user.username, requested_at=timezone.now(), request_id="recipe-1")
    press.finish(refused, Execution.Outcome.DENIED, "Your role cannot run it.")
    sent = Execution.objects.create(job=job, company=company, company_handle="47", job_handle=job.handle,
                                    job_name=job.name, user=user, username=user.username, outcome="sending",
                                    requested_at=timezone.now(), request_id="recipe-2")
    press.mark_sent(sent)
    assert press.finish(sent, Execution.Outcome.ACCEPTED, "IPS accepted it.")
    sent.ips_state, sent.ips_result, sent.ips_result_at = "Done", "ok", timezone.now()
    sent.save(update_fields=sorted(Execution.IPS_FIELDS))
    export = exports.start_export(user, {"outcome": "accepted"}, base.RequestInfo("recipe-3"))
    exports.finish_export(export, 2, True)

    # What it must not do.
    def sql(statement):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)

    for table in ("jobs_execution", "jobs_historyexport", "jobs_membershipchange"):
        _refused(f"DELETE FROM {table}", lambda t=table: sql(f"DELETE FROM {t}"), DatabaseError)
        _refused(f"TRUNCATE {table}", lambda t=table: sql(f"TRUNCATE {t}"), DatabaseError)
        _refused(f"a trigger on {table}", lambda t=table: sql(
            f"CREATE TRIGGER recipe BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()"),
            DatabaseError)
    _refused("UPDATE company_id = NULL", lambda: sql(f"UPDATE jobs_execution SET company_id = NULL WHERE id = {sent.pk}"),
             DatabaseError)
    _refused("a temporary table", lambda: sql("CREATE TEMPORARY TABLE recipe (id int)"), DatabaseError)
    _refused("prune", lambda: Execution.objects.prune(before=timezone.now() - dt.timedelta(days=31)), DatabaseError)

    # Deleting a user and a company: their rows stay, unlinked; their memberships are recorded.
    user.delete()
    job.delete()
    company.delete()
    for row in Execution.objects.all():
        assert (row.job_id, row.company_id, row.user_id) == (None, None, None), row
    assert HistoryExport.objects.get().user_id is None
    assert list(MembershipChange.objects.order_by("id").values_list("source", "role_before", "role_after")) == [
        ("admin", "", "IpsUser"), ("user_deleted", "IpsUser", "")]
    return f"as {connection.settings_dict['USER']}: the app works, its check passes, the guards hold"


def as_owner() -> str:
    """As ipsadmin_owner: the check refuses it; it prunes (cron)."""
    import datetime as dt

    from django.db import connection
    from django.utils import timezone

    from jobs import checks
    from jobs.models import Execution

    ids = {e.id for e in checks.database_role_check()}
    assert "jobs.E002" in ids, ids
    assert Execution.objects.prune(before=timezone.now() - dt.timedelta(days=30)) == 0
    return f"as {connection.settings_dict['USER']}: check --deploy refuses it ({', '.join(sorted(ids))}); it prunes"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="a PostgreSQL superuser's URL")
    parser.add_argument("--keep", action="store_true", help="leave the roles and database")
    parser.add_argument("--as", dest="role", choices=["app", "owner"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        print((as_app if args.role == "app" else as_owner)())
        return 0
    if not args.url:
        parser.error("the superuser's URL is required")
    try:
        run(args.url, keep=args.keep)
    except Exception as exc:  # one line for the operator, the details above it
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print("docs/deploy.md's PostgreSQL recipe: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
