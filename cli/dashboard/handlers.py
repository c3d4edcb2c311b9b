"""The dashboard's request handlers: pages, their JSON twins, and the actions (POST, XSRF-checked).

Every handler reads and steers workflows through the :class:`WorkflowInspector` only. The errors
the inspector raises on purpose become 4xx answers with their message (a page for a browser, a
JSON object under ``/api/``); anything else is a 500 whose details stay in the server's log.

The handlers are synchronous: each inspector call is a few Redis round trips, and a dashboard
serves a handful of operators, so a thread pool would add more moving parts than it saves.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import redis
import tornado.web

from cli.dashboard import auth, views
from cli.dashboard.links import flower_tasks_url, jaeger_trace_url
from orchestrator.errors import (
    DeadLetterNotFound,
    DecodeError,
    InvalidFilter,
    InvalidSubject,
    OrchestratorError,
    WorkflowFinished,
    WorkflowNotFailed,
    WorkflowNotFound,
)
from orchestrator.inspection import STATUSES, WorkflowFilter, WorkflowInspector
from orchestrator.registry import MachineRegistry

#: HTTP status of each error the inspector raises on purpose (the most specific class first).
ERROR_STATUS: tuple[tuple[type[OrchestratorError], int], ...] = (
    (WorkflowNotFound, 404),
    (DeadLetterNotFound, 404),
    (InvalidFilter, 400),
    (WorkflowNotFailed, 409),
    (WorkflowFinished, 409),
    (DecodeError, 409),
    (InvalidSubject, 404),
)
#: Longest cancellation reason accepted (it travels in the cancel event and the failure record).
MAX_REASON = 1000
#: What a page says after an action redirected to it; only these fixed texts are ever shown.
NOTICES = {
    "cancelled": "Cancellation sent.",
    "retried": "Retry sent: the failed event is applied again from the last good state.",
    "replayed": "Dead letter replayed: its event was sent again and the entry removed.",
    "purged": "Dead letters purged.",
}


@dataclass(frozen=True)
class DashboardContext:
    """What every handler needs: the inspector, the machines, the token and the other tools' URLs."""

    inspector: WorkflowInspector
    machines: Mapping[str, MachineRegistry]
    token: str | None
    flower_url: str
    jaeger_url: str


class Refused(tornado.web.HTTPError):
    """A request answered with an error status (4xx, or 503 for a silent store) and a message for its reader."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status)
        self.message = message


def require_token(handler: tornado.web.RequestHandler, expected: str | None) -> None:
    """Let the request through only with the token, when the dashboard has one.

    A browser opening any page with ``?token=`` gets the signed login cookie and is redirected
    to the same page without the token in its address (so it stays out of history and logs).

    Raises:
        Refused: 401, without a valid token.
    """
    if expected is None:
        return
    if auth.token_matches(expected, auth.bearer(handler.request.headers.get("Authorization"))):
        return
    given = handler.get_query_argument("token", None)
    if given is not None and handler.request.method in ("GET", "HEAD"):
        if not auth.token_matches(expected, given):
            raise Refused(401, "wrong token")
        handler.set_signed_cookie(auth.COOKIE, auth.COOKIE_VALUE, httponly=True, samesite="Strict")
        rest = [(name, value) for name, value in handler.request.query_arguments.items() if name != "token"]
        query = urlencode([(name, item.decode()) for name, values in rest for item in values])
        handler.redirect(handler.request.path + (f"?{query}" if query else ""))
        return
    cookie = handler.get_signed_cookie(auth.COOKIE)
    if cookie is None or cookie.decode() != auth.COOKIE_VALUE:
        raise Refused(
            401, "this dashboard needs its token: open it once with ?token=<token>, or send Authorization: Bearer"
        )


class StaticHandler(tornado.web.StaticFileHandler):
    """The dashboard's own scripts and styles, behind the same token as the pages."""

    def initialize(self, path: str, default_filename: str | None = None, *, context: DashboardContext) -> None:  # type: ignore[override]
        super().initialize(path, default_filename)
        self.context = context

    def prepare(self) -> None:
        require_token(self, self.context.token)


class BaseHandler(tornado.web.RequestHandler):
    """Token check, error pages and the inspector's errors mapped to HTTP statuses."""

    context: DashboardContext

    def initialize(self, context: DashboardContext) -> None:
        self.context = context

    @property
    def is_api(self) -> bool:
        return self.request.path.startswith("/api/")

    def prepare(self) -> None:
        require_token(self, self.context.token)

    def check_xsrf_cookie(self) -> None:
        """A POST carrying the token as a Bearer header cannot be forged by another site: no cookie
        is involved. Every other POST needs the XSRF token of a page the dashboard served."""
        expected = self.context.token
        if expected is not None and auth.token_matches(expected, auth.bearer(self.request.headers.get("Authorization"))):
            return
        super().check_xsrf_cookie()

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Turn the inspector's errors into 4xx answers that carry their message (and a store
        that does not answer into a 503 saying so, which the page's refresh shows)."""
        try:
            yield
        except redis.exceptions.RedisError as error:
            raise Refused(503, f"the store did not answer: {type(error).__name__}: {error}") from error
        except OrchestratorError as error:
            for kind, status in ERROR_STATUS:
                if isinstance(error, kind):
                    raise Refused(status, str(error)) from error
            raise

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A page (or, under ``/api/``, a JSON object) saying what was wrong; no stack trace."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, Refused):
            message = error.message
        elif isinstance(error, tornado.web.HTTPError) and error.log_message and status_code < 500:
            message = error.log_message % error.args if error.args else error.log_message
        else:
            try:
                message = HTTPStatus(status_code).phrase
            except ValueError:
                message = "Error"
        if self.is_api:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({"status": status_code, "error": message}))
            return
        self.render("error.html", status=status_code, message=message, notice=None)

    def respond(self, template: str, model: dict[str, Any], **extra: Any) -> None:
        """The page's model as JSON under ``/api/`` (what its script polls), else the page."""
        if self.is_api:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps(model))
            return
        notice = NOTICES.get(self.get_query_argument("notice", ""))
        self.render(template, model=model, notice=notice, **extra)

    def set_default_headers(self) -> None:
        # Only the dashboard's own files: no inline script, no other origin, no framing.
        self.set_header(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        )
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")


class RootHandler(BaseHandler):
    def get(self) -> None:
        self.redirect("/workflows")


class WorkflowListHandler(BaseHandler):
    """The workflow list: filters, counts per status, a page of rows and the next page's link."""

    def model(self) -> dict[str, Any]:
        arguments = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        with self.answering():
            where, limit, cursor = views.parse_listing(arguments)
            page = self.context.inspector.list_workflows(where, limit=limit, cursor=cursor)
            counts: dict[str, int] = {
                status: self.context.inspector.count(
                    WorkflowFilter(
                        status=status,
                        orchestrator=where.orchestrator,
                        version=where.version,
                        parent_subject=where.parent_subject,
                    )
                )
                for status in STATUSES
            }
        model = views.listing_model(where, limit, cursor, page.items, page.cursor, counts)
        model["filter"] = {name: getattr(where, field) or "" for name, field in views.FILTER_ARGUMENTS.items()}
        return model

    def get(self) -> None:
        self.respond("workflows.html", self.model(), statuses=STATUSES, orchestrators=sorted(self.context.machines))


class WorkflowHandler(BaseHandler):
    """One workflow: its statechart, state, context, timers, children, failure and timeline."""

    def model(self, subject: str) -> dict[str, Any]:
        inspector = self.context.inspector
        with self.answering():
            description = inspector.describe(subject)
            history = inspector.history(subject, limit=views.HISTORY_LIMIT)
        summary = description.summary
        machine = views.machine_of(
            self.context.machines, summary.orchestrator, summary.version, description.machine_class
        )
        diagram = views.diagram(machine, description.configuration) if machine is not None else None
        return views.workflow_model(
            description,
            history,
            diagram=diagram,
            trace_url=lambda trace_id: jaeger_trace_url(self.context.jaeger_url, trace_id),
            tasks_url=flower_tasks_url(self.context.flower_url, subject),
        )

    def get(self, subject: str) -> None:
        self.respond("workflow.html", self.model(subject))


class CancelHandler(BaseHandler):
    def post(self, subject: str) -> None:
        reason = self.get_body_argument("reason", "").strip()
        if not reason or len(reason) > MAX_REASON:
            raise Refused(400, f"reason: say why the workflow is cancelled (1 to {MAX_REASON} characters)")
        with self.answering():
            self.context.inspector.cancel(subject, reason)
        self.redirect(f"{views.workflow_path(subject)}?notice=cancelled")


class RetryHandler(BaseHandler):
    def post(self, subject: str) -> None:
        with self.answering():
            self.context.inspector.retry(subject)
        self.redirect(f"{views.workflow_path(subject)}?notice=retried")


class DeadLettersHandler(BaseHandler):
    def get(self) -> None:
        with self.answering():
            entries = self.context.inspector.dead_letters(limit=views.DEAD_LETTER_LIMIT)
        self.respond("dead_letters.html", views.dead_letters_model(entries))


class ReplayHandler(BaseHandler):
    def post(self, entry_id: str) -> None:
        with self.answering():
            self.context.inspector.replay_dead_letter(entry_id)
        self.redirect("/dead-letters?notice=replayed")


class PurgeHandler(BaseHandler):
    """Purge the entries named by ``id`` fields, or all of them with ``all=yes``."""

    def post(self) -> None:
        ids = [entry_id.strip() for entry_id in self.get_body_arguments("id") if entry_id.strip()]
        everything = self.get_body_argument("all", "") == "yes"
        if not ids and not everything:
            raise Refused(400, "id: name the dead letters to purge (or send all=yes to purge every one)")
        with self.answering():
            if ids:
                for entry_id in ids:
                    self.context.inspector.dead_letter(entry_id)  # a gone entry is a 404, not a silent 0
            self.context.inspector.purge_dead_letters(None if everything else ids)
        self.redirect("/dead-letters?notice=purged")


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        super().prepare()
        raise Refused(404, f"no page at {self.request.path}")
