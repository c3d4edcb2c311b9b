"""Command line: ``python -m cli demo [--celery]``.

The entry point sits above both the core and the runtime, so it may import either: the
in-process demo needs only the core and the examples, ``--celery`` the runtime.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m cli")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the example workflows and print the event flow")
    demo.add_argument(
        "--celery",
        action="store_true",
        help="run through Celery workers and Redis (ORCH_* settings): the running workers if they "
        "serve every demo queue, else two workers started for the demo",
    )
    args = parser.parse_args(argv)
    if args.command == "demo" and args.celery:
        from cli.celery_demo import run_celery_demo

        return run_celery_demo(sys.stdout)
    from cli.demo import run_demo

    return run_demo(sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
