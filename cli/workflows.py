"""``python -m cli workflows ...``: list, count, show, history, retry and cancel workflows.

Each command is a thin layer over one :class:`~orchestrator.inspection.WorkflowInspector` call
on the operator's inspector (:mod:`cli.operator`); bad input surfaces as the inspector's own
errors (``WorkflowNotFound``, ``InvalidFilter`` naming the field...), which the root group turns
into one line on stderr and exit status 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli.operator import Operator
from cli.render import console, fields, json_option, pretty_json, report, table, when
from orchestrator.inspection import (
    MAX_PAGE,
    STATUSES,
    HistoryEntry,
    Page,
    WorkflowDescription,
    WorkflowFilter,
)

F = TypeVar("F", bound=Callable[..., Any])

pass_operator = click.make_pass_decorator(Operator)


def filter_options(command: F) -> F:
    """The search filter options shared by ``list`` and ``count``."""
    for option in reversed(
        (
            click.option(
                "--status", type=click.Choice(STATUSES), help="running, waiting, failed, done or cancelled"
            ),
            click.option("--orchestrator", help="orchestrator name, e.g. arvo.orc.fanout"),
            click.option("--version", help="orchestrator version (needs --orchestrator)"),
            click.option("--parent", "parent_subject", metavar="SUBJECT", help="children of this workflow"),
        )
    ):
        command = option(command)
    return command


def _filter(
    status: Any, orchestrator: str | None, version: str | None, parent_subject: str | None
) -> WorkflowFilter:
    return WorkflowFilter(
        status=status, orchestrator=orchestrator, version=version, parent_subject=parent_subject
    )


@click.group()
def workflows() -> None:
    """See and steer workflows: list, count, show, history, retry, cancel."""


@workflows.command("list")
@filter_options
@click.option(
    "--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True, help="rows per page"
)
@click.option("--cursor", help="the cursor a previous page printed, for the next page")
@json_option
@pass_operator
def list_workflows(
    operator: Operator,
    status: Any,
    orchestrator: str | None,
    version: str | None,
    parent_subject: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Workflows matching the filters, most recently updated first."""
    found = operator.inspector.list_workflows(
        _filter(status, orchestrator, version, parent_subject), limit, cursor
    )
    report(found, as_json, lambda: print_page(found))


def print_page(found: Page) -> None:
    """A page of workflows for a person, and the cursor of the next one."""
    out = console()
    out.print(
        table(
            f"{len(found.items)} workflow(s)",
            ("status", "orchestrator", "version", "started", "updated", "subject"),
            (
                (
                    row.status,
                    row.orchestrator,
                    row.version,
                    when(row.started_ms),
                    when(row.updated_ms),
                    row.subject,
                )
                for row in found.items
            ),
        )
    )
    if found.cursor is not None:
        out.print(f"next page: --cursor {found.cursor}")


@workflows.command()
@filter_options
@json_option
@pass_operator
def count(
    operator: Operator,
    status: Any,
    orchestrator: str | None,
    version: str | None,
    parent_subject: str | None,
    as_json: bool,
) -> None:
    """How many workflows match the filters."""
    found = operator.inspector.count(_filter(status, orchestrator, version, parent_subject))
    report({"count": found}, as_json, str(found))


@workflows.command()
@click.argument("subject")
@json_option
@pass_operator
def show(operator: Operator, subject: str, as_json: bool) -> None:
    """Everything known of one workflow: status, state, context, what it waits for, its error."""
    described = operator.inspector.describe(subject)
    report(described, as_json, lambda: print_description(described))


def print_description(described: WorkflowDescription) -> None:
    """One workflow for a person: a summary, its context, its calls, timers, children and error."""
    out = console()
    summary = described.summary
    rows: list[tuple[str, Any]] = [
        ("subject", summary.subject),
        ("status", summary.status),
        ("orchestrator", f"{summary.orchestrator} {summary.version}"),
        ("machine", described.machine_class),
        ("state", ", ".join(described.configuration) or None),
        ("started", when(summary.started_ms)),
        ("updated", when(summary.updated_ms)),
        ("parent", summary.parent_subject),
        ("init event", described.init_event_id),
    ]
    if described.cancel_reason is not None:
        rows.append(("cancelled", described.cancel_reason))
    out.print(fields(rows))
    out.print("\ncontext:")
    out.print(pretty_json(described.context))
    if described.pending_calls:
        calls = ((call.event_id, call.timer_id, when(call.due_ms)) for call in described.pending_calls)
        out.print(table("pending service calls", ("call event", "deadline timer", "deadline"), calls))
    if described.timers:
        timers = ((timer.timer_id, timer.event_type, when(timer.due_ms)) for timer in described.timers)
        out.print(table("timers", ("timer", "event", "due"), timers))
    if described.children:
        children = ((child.type, child.init_event_id, child.subject) for child in described.children)
        out.print(table("children", ("type", "init event", "subject"), children))
    failure = described.failure
    if failure is not None:
        out.print(f"\nlast error: {failure.name}: {failure.message}")
        out.print(fields((("at", failure.at), ("event", failure.event_id))))
        out.print(failure.stack.rstrip())


@workflows.command()
@click.argument("subject")
@click.option("--limit", type=click.IntRange(min=1), help="only the newest N steps")
@json_option
@pass_operator
def history(operator: Operator, subject: str, limit: int | None, as_json: bool) -> None:
    """The steps of one workflow, oldest first: event, outcome, state before and after."""
    entries = operator.inspector.history(subject, limit)
    steps = table(
        f"{len(entries)} step(s)",
        ("at", "event", "source", "outcome", "state", "emitted", "ms"),
        (_history_row(entry) for entry in entries),
    )
    report(entries, as_json, lambda: console().print(steps))


def _history_row(entry: HistoryEntry) -> tuple[Any, ...]:
    outcome: str = entry.outcome
    if entry.reason is not None:
        outcome = f"{outcome} ({entry.reason})"
    if entry.error_name is not None:
        outcome = f"{outcome}: {entry.error_name}: {entry.error_message}"
    before = ", ".join(entry.before) if entry.before is not None else "-"
    after = ", ".join(entry.after) if entry.after is not None else "-"
    emitted = ", ".join(ref.type for ref in entry.emitted) or None
    state = f"{before} -> {after}"
    return (
        when(entry.at_ms),
        entry.event_type,
        entry.event_source,
        outcome,
        state,
        emitted,
        f"{entry.duration_ms:.1f}",
    )


@workflows.command()
@click.argument("subject")
@json_option
@pass_operator
def retry(operator: Operator, subject: str, as_json: bool) -> None:
    """Resume a failed workflow from its last good state (its failed event is applied again)."""
    event_id = operator.inspector.retry(subject)
    report({"subject": subject, "event_id": event_id}, as_json, f"retry sent for {subject}: event {event_id}")


@workflows.command()
@click.argument("subject")
@click.option("--reason", required=True, help="why (sent to whoever awaits the workflow)")
@json_option
@pass_operator
def cancel(operator: Operator, subject: str, reason: str, as_json: bool) -> None:
    """Cancel a running workflow: its timers are dropped, its children cancelled."""
    operator.inspector.cancel(subject, reason)
    report({"subject": subject, "reason": reason}, as_json, f"cancellation sent for {subject}")
