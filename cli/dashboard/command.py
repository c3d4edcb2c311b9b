"""``python -m cli ui``: the dashboard over the deployment's Redis.

A click command of the command line (:mod:`cli.app` mounts it). It reads the workflows through
the :class:`~cli.operator.Operator` the other commands use, so it shows what ``workflows list``
shows. A bad option (a public address without a token, a tool address that is no URL, a port in
use) is one line on stderr and exit status 1.
"""

from __future__ import annotations

import click

from cli.dashboard.auth import TOKEN_ENV, check_bind
from cli.dashboard.links import DEFAULT_FLOWER_URL, DEFAULT_JAEGER_URL, check_base_url
from cli.operator import Operator

#: Where the dashboard listens unless told: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="0 picks a free port")
@click.option(
    "--token",
    default=None,
    help=f"require this token on every request (default: ${TOKEN_ENV}); needed to listen beyond loopback",
)
@click.option("--flower-url", default=DEFAULT_FLOWER_URL, show_default=True, help="Flower's address, for task links")
@click.option("--jaeger-url", default=DEFAULT_JAEGER_URL, show_default=True, help="Jaeger UI's address, for trace links")
@click.pass_obj
def ui(operator: Operator, host: str, port: int, token: str | None, flower_url: str, jaeger_url: str) -> None:
    """Serve the web dashboard: workflows, their statecharts and timelines, dead letters."""
    from cli.dashboard.app import serve
    from config.settings import Settings

    if token is None:
        token = Settings().dashboard_token
    try:
        if token is not None and not token.strip():
            raise ValueError("--token must not be empty")
        check_bind(host, token)
        check_base_url("--flower-url", flower_url)
        check_base_url("--jaeger-url", jaeger_url)
    except ValueError as error:
        raise click.ClickException(str(error)) from None

    def ready(bound: int) -> None:
        shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
        login = "?token=<token>" if token else ""
        click.echo(f"dashboard on http://{shown}:{bound}/{login} (Ctrl-C stops it)")

    try:
        serve(
            operator.inspector,
            host=host,
            port=port,
            token=token,
            flower_url=flower_url,
            jaeger_url=jaeger_url,
            machines=operator.make_machines(),
            ready=ready,
        )
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
