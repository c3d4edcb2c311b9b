"""``python -m cli ui``: the dashboard over the deployment's Redis.

The arguments are declared here so that the command line only has to mount them. One line on
standard error and exit status 1 for a bad argument (a public address without a token, a
setting that does not parse).
"""

from __future__ import annotations

import argparse
import sys

from cli.dashboard.auth import TOKEN_ENV
from cli.dashboard.links import DEFAULT_FLOWER_URL, DEFAULT_JAEGER_URL, check_base_url

#: Where the dashboard listens unless told: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``ui``."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: 8765; 0 picks a free one)")
    parser.add_argument(
        "--token",
        default=None,
        help=f"require this token on every request (default: ${TOKEN_ENV}); needed to listen beyond 127.0.0.1",
    )
    parser.add_argument("--flower-url", default=DEFAULT_FLOWER_URL, help="Flower's address, for task links")
    parser.add_argument("--jaeger-url", default=DEFAULT_JAEGER_URL, help="Jaeger UI's address, for trace links")


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard until interrupted; 1 with one line on stderr when it cannot start."""
    from cli.dashboard.app import serve
    from cli.dashboard.auth import check_bind
    from cli.machines import MachineCatalog
    from config.settings import Settings
    from orchestrator.errors import OrchestratorError

    try:
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be from 0 to 65535, got {args.port}")
        settings = Settings()
        token = args.token if args.token is not None else settings.dashboard_token
        if token is not None and not token.strip():
            raise ValueError("--token must not be empty")
        check_bind(args.host, token)
        check_base_url("--flower-url", args.flower_url)
        check_base_url("--jaeger-url", args.jaeger_url)
        from tasks.inspect import inspector_from_settings

        inspector = inspector_from_settings(settings)
        machines = MachineCatalog.from_settings(settings)
    except (OrchestratorError, ValueError, ImportError) as error:
        print(f"ui: {_one_line(error)}", file=sys.stderr)
        return 1

    def ready(port: int) -> None:
        login = "?token=<token>" if token else ""
        host = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
        print(f"dashboard on http://{host}:{port}/{login} (Ctrl-C stops it)", flush=True)

    try:
        serve(
            inspector,
            host=args.host,
            port=args.port,
            token=token,
            flower_url=args.flower_url,
            jaeger_url=args.jaeger_url,
            machines=machines,
            ready=ready,
        )
    except OSError as error:
        print(f"ui: cannot listen on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
