"""What each dashboard page shows, as plain data: the same model renders the page and its refresh.

A page model is a mapping of ``texts`` (element name to text), ``tables`` (table name to rows of
:class:`Cell`) and a few extras (the diagram's Mermaid source, which actions apply). The server
renders it into HTML once (Tornado templates, autoescaped) and serves it as JSON to the page's
script, which puts the same values back with ``textContent``: both paths show the same thing,
and nothing a workflow stores (an event's data is user input) ever becomes markup.

Nothing here does I/O: the handlers call the inspector and pass its answers in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict
from urllib.parse import quote, urlencode

from orchestrator.diagram import mermaid
from orchestrator.errors import ConfigViolation, InvalidFilter
from orchestrator.inspection import (
    MAX_PAGE,
    STATUSES,
    DeadLetterEntry,
    HistoryEntry,
    WorkflowDescription,
    WorkflowFilter,
    WorkflowSummary,
)
from orchestrator.machine import ArvoMachine
from orchestrator.registry import MachineRegistry
from tasks.machines import find_machine

#: Rows a listing shows when the query does not say.
DEFAULT_LIMIT = 50
#: Newest history entries a workflow page shows.
HISTORY_LIMIT = 200
#: Dead letters a page shows.
DEAD_LETTER_LIMIT = 100
#: Query arguments of the listing and the filter field each one sets.
FILTER_ARGUMENTS = {
    "status": "status",
    "orchestrator": "orchestrator",
    "version": "version",
    "parent": "parent_subject",
}
#: The query argument of each filter field (for error messages).
QUERY_NAMES = {field: name for name, field in FILTER_ARGUMENTS.items()}
#: Statuses whose workflow can still be cancelled.
CANCELLABLE = frozenset({"running", "waiting"})


class Cell(TypedDict, total=False):
    """One table cell: text, optionally a link, a preformatted block or a POST button.

    ``href`` and ``post`` are built by this module from fixed paths and escaped values, never
    taken from stored data, so a stored ``javascript:`` string cannot become a link.
    """

    text: str
    href: str
    pre: bool
    post: str
    label: str
    field: str
    value: str
    cls: str


def format_ms(epoch_ms: int | None) -> str:
    """An epoch-millisecond time as UTC ISO 8601 to the millisecond (``2026-12-02 01:02:03.456Z``)."""
    if epoch_ms is None:
        return ""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def workflow_path(subject: str) -> str:
    """The dashboard path of one workflow (the subject is base64: ``/`` and ``+`` are escaped)."""
    return f"/workflows/{quote(subject, safe='')}"


def dead_letter_path(entry_id: str) -> str:
    """The dashboard path of one dead letter's actions."""
    return f"/dead-letters/{quote(entry_id, safe='')}"


def short(subject: str, keep: int = 12) -> str:
    """The end of a long subject token, for tables (the whole one is on the workflow's page)."""
    return subject if len(subject) <= keep + 1 else "…" + subject[-keep:]


def parse_listing(arguments: Mapping[str, str]) -> tuple[WorkflowFilter, int, str | None]:
    """The filter, page size and cursor of a listing query.

    Empty arguments count as absent (an HTML form sends every field).

    Raises:
        InvalidFilter: naming the argument and the rule.
    """
    given = {FILTER_ARGUMENTS[name]: value.strip() for name, value in arguments.items() if name in FILTER_ARGUMENTS}
    try:
        chosen: dict[str, Any] = {field: value for field, value in given.items() if value}
        where = WorkflowFilter(**chosen)
    except InvalidFilter as error:  # name the query argument the reader typed, not the field
        raise InvalidFilter(QUERY_NAMES.get(error.field, error.field), error.rule) from None
    text = arguments.get("limit", "").strip()
    limit = DEFAULT_LIMIT
    if text:
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE:
            raise InvalidFilter("limit", f"must be a whole number from 1 to {MAX_PAGE}, got {text!r}")
        limit = int(text)
    cursor = arguments.get("cursor", "").strip() or None
    return where, limit, cursor


def filter_query(where: WorkflowFilter, limit: int, cursor: str | None = None) -> str:
    """The query string that lists ``where`` again (for the next page and the refresh)."""
    pairs = {name: getattr(where, field) for name, field in FILTER_ARGUMENTS.items()}
    query = {name: value for name, value in pairs.items() if value is not None}
    if limit != DEFAULT_LIMIT:
        query["limit"] = str(limit)
    if cursor is not None:
        query["cursor"] = cursor
    return urlencode(query)


def summary_cells(summary: WorkflowSummary) -> list[Cell]:
    """One listing row."""
    parent: Cell = {"text": ""}
    if summary.parent_subject:
        parent = {"text": short(summary.parent_subject), "href": workflow_path(summary.parent_subject)}
    return [
        {"text": short(summary.subject), "href": workflow_path(summary.subject)},
        {"text": summary.orchestrator},
        {"text": summary.version},
        {"text": summary.status, "cls": f"status status-{summary.status}"},
        {"text": format_ms(summary.started_ms)},
        {"text": format_ms(summary.updated_ms)},
        parent,
    ]


def listing_model(
    where: WorkflowFilter,
    limit: int,
    cursor: str | None,
    items: Sequence[WorkflowSummary],
    next_cursor: str | None,
    counts: Mapping[str, int],
) -> dict[str, Any]:
    """The workflow list page: rows, counts per status and the next page's link."""
    texts = {f"count-{status}": str(counts.get(status, 0)) for status in STATUSES}
    texts["count-all"] = str(sum(counts.get(status, 0) for status in STATUSES))
    texts["shown"] = f"{len(items)} shown" + (" (more on the next page)" if next_cursor else "")
    return {
        "texts": texts,
        "tables": {"workflows": [summary_cells(item) for item in items]},
        "next": f"/workflows?{filter_query(where, limit, next_cursor)}" if next_cursor else None,
        "api": f"/api/workflows?{filter_query(where, limit, cursor)}",
    }


def _configuration(states: Sequence[str] | None) -> str:
    return ", ".join(states) if states else ""


def machine_of(
    registries: Mapping[str, MachineRegistry], orchestrator: str, version: str, class_name: str | None
) -> type[ArvoMachine] | None:
    """The machine class a workflow runs, or None when the deployment no longer has it.

    The orchestrator and version resolve as the orchestrator resolves them; the description's
    ``machine_class`` (bare or dotted) is the fallback when that version is gone but the class
    is still listed.
    """
    try:
        return find_machine(registries, orchestrator, version)
    except ConfigViolation:
        registry = registries.get(orchestrator)
    for machine in registry.machines if registry is not None and class_name else ():
        if class_name in (machine.__name__, f"{machine.__module__}.{machine.__qualname__}"):
            return machine
    return None


def diagram(machine: type[ArvoMachine], configuration: Sequence[str]) -> str:
    """The machine's statechart in Mermaid, the workflow's active states highlighted."""
    return mermaid(machine, active=tuple(configuration))


def history_cells(entry: HistoryEntry, trace_url: Callable[[str], str]) -> list[Cell]:
    """One timeline row: the event, what the step did, the states and what it emitted."""
    outcome: str = entry.outcome
    if entry.reason:
        outcome += f" ({entry.reason})"
    if entry.error_name is not None:
        outcome += f": {entry.error_name}: {entry.error_message or ''}"
    trace: Cell = {"text": ""}
    if entry.trace_id:
        trace = {"text": entry.trace_id[:8] + "…", "href": trace_url(entry.trace_id)}
    return [
        {"text": format_ms(entry.at_ms)},
        {"text": entry.event_type},
        {"text": entry.event_source},
        {"text": outcome, "cls": f"outcome outcome-{entry.outcome}"},
        {"text": (_configuration(entry.before) or "(start)") + " → " + (_configuration(entry.after) or "(none)")},
        {"text": ", ".join(ref.type for ref in entry.emitted)},
        {"text": f"{entry.duration_ms:.1f} ms"},
        trace,
    ]


def workflow_model(
    description: WorkflowDescription,
    history: Sequence[HistoryEntry],
    *,
    diagram: str | None,
    trace_url: Callable[[str], str],
    tasks_url: str,
) -> dict[str, Any]:
    """The workflow page: state, context, what it waits for, its failure and its timeline."""
    summary = description.summary
    failure = description.failure
    traces = [entry.trace_id for entry in history if entry.trace_id]
    texts = {
        "subject": summary.subject,
        "orchestrator": f"{summary.orchestrator} {summary.version}",
        "status": summary.status,
        "configuration": _configuration(description.configuration),
        "started": format_ms(summary.started_ms),
        "updated": format_ms(summary.updated_ms),
        "machine": description.machine_class or "",
        "init-event": description.init_event_id or "",
        "cancel-reason": description.cancel_reason or "",
        "context": json.dumps(description.context, indent=2, sort_keys=True, default=str),
        "failure-name": failure.name if failure else "",
        "failure-message": failure.message if failure else "",
        "failure-at": (failure.at or "") if failure else "",
        "failure-event": (failure.event_id or "") if failure else "",
        "failure-stack": failure.stack if failure else "",
        "history-count": f"{len(history)} step{'' if len(history) == 1 else 's'} shown (the newest {HISTORY_LIMIT} at most)",
    }
    path = workflow_path(summary.subject)
    return {
        "texts": texts,
        "tables": {
            "calls": [
                [{"text": call.event_id}, {"text": call.timer_id}, {"text": format_ms(call.due_ms)}]
                for call in description.pending_calls
            ],
            "timers": [
                [{"text": timer.timer_id}, {"text": timer.event_type}, {"text": format_ms(timer.due_ms)}]
                for timer in description.timers
            ],
            "children": [
                [{"text": child.subject, "href": workflow_path(child.subject)}, {"text": child.type}]
                for child in description.children
            ],
            "history": [history_cells(entry, trace_url) for entry in reversed(history)],
        },
        "links": {
            "trace": trace_url(traces[-1]) if traces else None,
            "tasks": tasks_url,
            "parent": workflow_path(summary.parent_subject) if summary.parent_subject else None,
        },
        "diagram": diagram,
        "can": {"cancel": summary.status in CANCELLABLE, "retry": summary.status == "failed"},
        "post": {"cancel": f"{path}/cancel", "retry": f"{path}/retry"},
        "api": f"/api{path}",
    }


def _payload_text(payload: Any) -> str:
    if isinstance(payload, str | bytes):
        return payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
    return json.dumps(payload, indent=2, sort_keys=True, default=str)


def dead_letter_cells(entry: DeadLetterEntry) -> list[Cell]:
    """One dead letter: why, when, what, and its replay and purge buttons."""
    path = dead_letter_path(entry.id)
    subject: Cell = {"text": ""}
    if entry.subject:
        subject = {"text": short(entry.subject), "href": workflow_path(entry.subject)}
    return [
        {"text": entry.id},
        {"text": format_ms(entry.at_ms)},
        {"text": entry.reason},
        {"text": entry.error},
        {"text": entry.event_type or ""},
        subject,
        {"text": str(entry.replays)},
        {"text": _payload_text(entry.payload), "pre": True},
        {"text": "", "post": f"{path}/replay", "label": "Replay"},
        {"text": "", "post": "/dead-letters/purge", "label": "Purge", "field": "id", "value": entry.id},
    ]


def dead_letters_model(entries: Sequence[DeadLetterEntry]) -> dict[str, Any]:
    """The dead letters page."""
    return {
        "texts": {"dead-count": f"{len(entries)} shown (oldest {DEAD_LETTER_LIMIT} at most)"},
        "tables": {"dead-letters": [dead_letter_cells(entry) for entry in entries]},
        "api": "/api/dead-letters",
    }
