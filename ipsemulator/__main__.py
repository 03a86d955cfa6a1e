"""``python -m ipsemulator``: serve the IPS emulator without Django."""

import argparse

from .server import serve


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ipsemulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--data", default=None, help="TOML data file (default demo.toml)")
    parser.add_argument("--job-duration", type=float, default=3.0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--no-scheduler", action="store_true",
                        help="IPS's own scheduler does not fire jobs (it does by default)")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.data, args.job_duration, verbose=not args.quiet,
          scheduler=not args.no_scheduler)


if __name__ == "__main__":
    main()
