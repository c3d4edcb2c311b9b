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
    cancel = commands.add_parser("cancel", help="cancel a running workflow (Celery runtime, ORCH_* settings)")
    cancel.add_argument("subject", help="the workflow's subject")
    cancel.add_argument("--reason", required=True, help="why (sent to whoever awaits the workflow)")
    from cli.dashboard.command import add_arguments as add_ui_arguments

    add_ui_arguments(commands.add_parser("ui", help="serve the web dashboard over the deployment's Redis"))
    args = parser.parse_args(argv)
    if args.command == "ui":
        from cli.dashboard.command import run as run_ui

        return run_ui(args)
    if args.command == "cancel":
        return _cancel(args.subject, args.reason)
    if args.command == "demo" and args.celery:
        from cli.celery_demo import run_celery_demo

        return run_celery_demo(sys.stdout)
    from cli.demo import run_demo

    return run_demo(sys.stdout)


def _cancel(subject: str, reason: str) -> int:
    from orchestrator.errors import OrchestratorError
    from tasks.client import cancel_workflow

    try:
        cancel_workflow(subject, reason)
    except (OrchestratorError, ValueError) as error:
        print(f"cancel: {error}", file=sys.stderr)
        return 1
    print(f"cancellation sent for {subject}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
