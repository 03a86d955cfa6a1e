"""``manage.py ipsemulator``: serve the IPS emulator until Ctrl-C.

The only module of ipsemulator/ that imports Django; the emulator itself is a
plain WSGI application (see ipsemulator/README.md).
"""

from django.core.management.base import BaseCommand

from ipsemulator.server import serve


class Command(BaseCommand):
    help = "Serve the local IPS SOAP emulator (WSDL, IpsApiService, /_emulator/ controls)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8081, help="port (default 8081)")
        parser.add_argument("--data", default=None,
                            help="TOML data file (default ipsemulator/demo.toml)")
        parser.add_argument("--job-duration", type=float, default=3.0,
                            help="seconds an executed job runs (default 3)")
        parser.add_argument("--quiet", action="store_true", help="do not log requests")
        parser.add_argument("--no-scheduler", action="store_true",
                            help="IPS's own scheduler does not fire jobs at their schedule "
                                 "(it does by default; POST /_emulator/config {\"scheduler\": true} switches)")

    def handle(self, *args, **options):
        serve(host=options["host"], port=options["port"], data_path=options["data"],
              job_duration=options["job_duration"], verbose=not options["quiet"],
              out=self.stdout, scheduler=not options["no_scheduler"])
