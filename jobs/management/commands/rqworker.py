"""django-rq's ``rqworker``, with the one serializer the dashboard allows.

RQ's default serializer is pickle: whoever can write to Redis would run code
in the worker. Jobs are written as JSON (settings.RQ_QUEUES' SERIALIZER), and
this worker reads only JSON, whatever ``--serializer`` says.
"""

from django.conf import settings
from django.core.management.base import CommandError
from django_rq.management.commands import rqworker


class Command(rqworker.Command):
    help = "Run RQ workers (TASKS_BACKEND=rq) that read jobs as JSON only, never pickle."

    def handle(self, *args, **options):
        wanted = settings.RQ_SERIALIZER
        given = options.get("serializer")
        if given not in (None, wanted, "rq.serializers.DefaultSerializer"):
            raise CommandError(f"This worker reads jobs with {wanted} only, not {given}.")
        # DefaultSerializer is django-rq's default for an absent option: never used here.
        options["serializer"] = wanted
        return super().handle(*args, **options)
