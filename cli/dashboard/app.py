"""The dashboard's Tornado application and its server.

:func:`make_app` wires the routes over one :class:`WorkflowInspector`; :func:`serve` listens
until interrupted. Pages are server-side Tornado templates (autoescaped: an event's data is user
input) and one small script, ``static/dashboard.js``, that polls each page's JSON twin and puts
the new values in with ``textContent``. Mermaid is served from ``static/vendor/``: nothing is
loaded from another origin, so the dashboard works with no internet.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from cli.dashboard import handlers
from cli.dashboard.auth import check_bind
from cli.dashboard.handlers import DashboardContext
from cli.dashboard.links import DEFAULT_FLOWER_URL, DEFAULT_JAEGER_URL
from orchestrator.inspection import WorkflowInspector
from orchestrator.registry import MachineRegistry

HERE = Path(__file__).resolve().parent
#: A subject or dead-letter id in a path: one segment, percent-encoded (``/`` is ``%2F``).
SEGMENT = r"([^/]+)"


class TableModule(tornado.web.UIModule):
    """A table of :class:`cli.dashboard.views.Cell` rows that the page's script can refill."""

    def render(self, name: str, headers: list[str], rows: list[list[dict[str, Any]]]) -> str:  # type: ignore[override]
        return self.render_string("table.html", name=name, headers=headers, rows=rows).decode()


def make_app(
    inspector: WorkflowInspector,
    *,
    token: str | None,
    flower_url: str = DEFAULT_FLOWER_URL,
    jaeger_url: str = DEFAULT_JAEGER_URL,
    machines: Mapping[str, MachineRegistry],
) -> tornado.web.Application:
    """The dashboard over ``inspector``.

    Args:
        inspector: the store's inspector (Redis in a deployment, in-process in tests).
        token: when given, every request must carry it (see :mod:`cli.dashboard.auth`).
        flower_url: Flower's base URL, for the links to a workflow's tasks.
        jaeger_url: Jaeger UI's base URL, for the links to a step's trace.
        machines: the deployment's machine registries by orchestrator name, to draw a workflow's
            statechart (:func:`tasks.machines.deployment_machines`).
    """
    context = DashboardContext(inspector, machines, token, flower_url, jaeger_url)
    args = {"context": context}
    routes: list[Any] = [
        (r"/", handlers.RootHandler, args),
        (r"/(?:api/)?workflows", handlers.WorkflowListHandler, args),
        (rf"/(?:api/)?workflows/{SEGMENT}", handlers.WorkflowHandler, args),
        (rf"/workflows/{SEGMENT}/cancel", handlers.CancelHandler, args),
        (rf"/workflows/{SEGMENT}/retry", handlers.RetryHandler, args),
        (r"/(?:api/)?dead-letters", handlers.DeadLettersHandler, args),
        (r"/dead-letters/purge", handlers.PurgeHandler, args),
        (rf"/dead-letters/{SEGMENT}/replay", handlers.ReplayHandler, args),
    ]
    return tornado.web.Application(
        routes,
        template_path=str(HERE / "templates"),
        static_path=str(HERE / "static"),
        static_handler_class=handlers.StaticHandler,
        static_handler_args=dict(args),  # Tornado adds "path" to this dict
        ui_modules={"Table": TableModule},
        default_handler_class=handlers.NotFoundHandler,
        default_handler_args=args,
        xsrf_cookies=True,
        # Signs the login cookie; a new secret per process logs browsers out on restart.
        cookie_secret=secrets.token_urlsafe(32),
        autoescape="xhtml_escape",
    )


async def _run(app: tornado.web.Application, host: str, port: int, ready: Callable[[int], None]) -> None:
    sockets = tornado.netutil.bind_sockets(port, address=host)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    ready(sockets[0].getsockname()[1])  # the port bound, when 0 asked for any
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.stop()


def serve(
    inspector: WorkflowInspector,
    *,
    host: str,
    port: int,
    token: str | None,
    flower_url: str = DEFAULT_FLOWER_URL,
    jaeger_url: str = DEFAULT_JAEGER_URL,
    machines: Mapping[str, MachineRegistry],
    ready: Callable[[int], None] = lambda port: None,
) -> None:
    """Serve the dashboard on ``host:port`` until SIGINT or SIGTERM.

    Raises:
        ValueError: ``host`` is not a loopback address and there is no token.
    """
    check_bind(host, token)
    app = make_app(inspector, token=token, flower_url=flower_url, jaeger_url=jaeger_url, machines=machines)
    asyncio.run(_run(app, host, port, ready))
