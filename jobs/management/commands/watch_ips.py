import logging
import signal
import threading

from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

from jobs.services import watch

log = logging.getLogger(__name__)

#: The wait before a round is tried again after the database failed it (a restart, a failover).
DATABASE_RETRY_SECONDS = 1.0


class Command(BaseCommand):
    help = (
        "Watch every company's runs in IPS: one look per company per interval (getActiveJobs, its job logs), "
        "every run IPS makes recorded once, results of presses and of IPS's own runs alike, and each "
        "connection's jobs synced on its interval. Run one or more anywhere (a lease per company keeps "
        "it to one look at a time); `make run` runs one. -v 2 writes a line for every look, -v 3 one for every "
        "round too."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One round over the companies due now, then exit.")
        parser.add_argument("--owner", default="", help="This watcher's name in the leases (default host:pid).")

    def handle(self, *args, once=False, owner="", verbosity=1, **options):
        owner = owner or watch.default_owner()
        stop = threading.Event()
        if not once:
            # A stop waits for the look in hand (its lease is released), never cuts it in half.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            self.stdout.write(f"watching IPS as {owner}")
        while not stop.is_set():
            close_old_connections()
            try:
                results = watch.watch_round(owner, stop=stop)
            except DatabaseError:
                if once:
                    raise
                # The database went away mid-round: a lease taken is left to end by itself, the
                # next round starts from what the database holds. Never a dead watcher for it.
                log.exception("watch round of %s failed on the database; trying again", owner)
                stop.wait(DATABASE_RETRY_SECONDS)
                continue
            for result in results:
                if once or verbosity >= 2 or result.error or result.ended or result.found:
                    self.stdout.write(str(result))
            if once:
                return
            wait = watch.seconds_to_next()
            if verbosity >= 3:
                self.stdout.write(f"round: {len(results)} looks; next round in {wait:.2f} s")
            stop.wait(wait)
