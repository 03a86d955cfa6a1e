"""gunicorn settings for ipsadmin: `gunicorn -c ipsadmin/gunicorn.conf.py ipsadmin.wsgi`."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Unset: gunicorn's advice for sync workers, two per core the process may use, plus one, at most
# MAX_DEFAULT_WORKERS (deploy/systemd/ipsadmin-web.service). A Run's worker mostly waits on IPS, not on the
# CPU. The cap: the affinity ignores a container's CPU quota, and each worker keeps a database connection
# (docs/deploy.md, "Scaling out": the connection budget); more is GUNICORN_WORKERS's to say.
MAX_DEFAULT_WORKERS = 9
workers = int(os.environ.get("GUNICORN_WORKERS") or min(2 * len(os.sched_getaffinity(0)) + 1, MAX_DEFAULT_WORKERS))
# Sync workers: a Run holds its worker for at most two IPS calls, each with
# a whole-reply deadline of connect + read timeout (2 x (3 s + 10 s) by
# default); on_starting refuses timeouts that would not fit in this one.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "45"))
# A reload or stop lets each worker finish its request: a Run's IPS calls (26 s by default) included,
# so no press is cut mid-call by a deploy (deploy/systemd/ipsadmin-web.service waits longer than this).
graceful_timeout = timeout
accesslog = "-"
# Puts the request id in the access log, beside the app's log lines.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s'
limit_request_line = 8190
limit_request_fields = 100


def on_starting(server):
    # Refuse to serve with demo passwords (DEBUG off), or with IPS timeouts
    # a worker could not wait out. The checks run in a child process: were
    # Django imported in the master, the workers a graceful reload (HUP) forks
    # would keep the old release's settings, models and services beside the
    # new views (docs/deploy.md, "Upgrading").
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")
            import django

            django.setup()
            from jobs.checks import check_before_serving

            check_before_serving(worker_timeout=timeout)
            # The metrics directory's files are left alone: the watcher and task workers of this host sum
            # with them, and deleting a dead worker's counts would make a total go down (a false reset to
            # Prometheus). /run empties at reboot (docs/deploy.md, "Metrics and health").
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("ipsadmin refused to start: see the error above.")


def child_exit(server, worker):
    # A dead worker's live gauges leave the sums; its counters stay counted (prometheus-client's advice).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
