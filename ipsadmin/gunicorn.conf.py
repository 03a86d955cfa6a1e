"""gunicorn settings for ipsadmin: `gunicorn -c ipsadmin/gunicorn.conf.py ipsadmin.wsgi`."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
# Sync workers: a Run holds its worker for at most two IPS calls, each with
# a whole-reply deadline of connect + read timeout (2 x (3 s + 10 s) by
# default); on_starting refuses timeouts that would not fit in this one.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "45"))
graceful_timeout = 20
accesslog = "-"
# Puts the request id in the access log, beside the app's log lines.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s'
limit_request_line = 8190
limit_request_fields = 100


def on_starting(server):
    # Refuse to serve with demo passwords (DEBUG off), or with IPS timeouts
    # a worker could not wait out.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipsadmin.settings")
    import django

    django.setup()
    from jobs.checks import check_before_serving

    check_before_serving(worker_timeout=timeout)
