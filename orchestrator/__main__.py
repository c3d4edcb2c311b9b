"""Command line: ``python -m orchestrator demo [--celery]``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the example workflows and print the event flow")
    demo.add_argument(
        "--celery",
        action="store_true",
        help="run through real Celery workers and Redis (ORCH_* settings) instead of in process",
    )
    args = parser.parse_args(argv)
    if args.command == "demo" and args.celery:
        from tasks.demo import run_celery_demo

        return run_celery_demo(sys.stdout)
    from orchestrator.demo import run_demo

    return run_demo(sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
