"""``python -m cli dead-letters ...``: list, show, replay and purge dead-lettered messages.

A replay sends the entry's event again and removes the entry; if the event fails again, the
runtime stores a new entry with the new reason (``WorkflowInspector.replay_dead_letter``).
"""

from __future__ import annotations

import click

from cli.operator import Operator
from cli.render import console, fields, json_option, pretty_json, report, table, when
from orchestrator.inspection import DeadLetterEntry

pass_operator = click.make_pass_decorator(Operator)

#: How much of an error a listing shows (``show`` prints it whole).
ERROR_PREVIEW = 80


@click.group("dead-letters")
def dead_letters() -> None:
    """Messages the deployment could not handle: list, show, replay, purge."""


@dead_letters.command("list")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="the oldest N entries"
)
@json_option
@pass_operator
def list_entries(operator: Operator, limit: int, as_json: bool) -> None:
    """The oldest dead letters, with why each was buried."""
    entries = operator.inspector.dead_letters(limit)
    listing = table(
        f"{len(entries)} dead letter(s)",
        ("id", "at", "reason", "event", "replays", "error", "subject"),
        (
            (
                entry.id,
                when(entry.at_ms),
                entry.reason,
                entry.event_type,
                entry.replays,
                _preview(entry.error),
                entry.subject,
            )
            for entry in entries
        ),
    )
    report(entries, as_json, lambda: console().print(listing))


def _preview(error: str) -> str:
    line = " ".join(error.split())
    return line if len(line) <= ERROR_PREVIEW else line[: ERROR_PREVIEW - 3] + "..."


@dead_letters.command()
@click.argument("entry_id", metavar="ID")
@json_option
@pass_operator
def show(operator: Operator, entry_id: str, as_json: bool) -> None:
    """One dead letter: why, when, the error and the message itself."""
    entry = operator.inspector.dead_letter(entry_id)
    report(entry, as_json, lambda: print_entry(entry))


def print_entry(entry: DeadLetterEntry) -> None:
    """One dead letter for a person."""
    out = console()
    out.print(
        fields(
            (
                ("id", entry.id),
                ("at", when(entry.at_ms)),
                ("reason", entry.reason),
                ("event", entry.event_type),
                ("subject", entry.subject),
                ("task", entry.task_id),
                ("replays", entry.replays),
                ("error", entry.error),
            )
        )
    )
    out.print("\nmessage:")
    out.print(pretty_json(entry.payload))


@dead_letters.command()
@click.argument("entry_id", metavar="ID")
@json_option
@pass_operator
def replay(operator: Operator, entry_id: str, as_json: bool) -> None:
    """Send the entry's event again and remove the entry."""
    replayed = operator.inspector.replay_dead_letter(entry_id)
    said = f"replayed {replayed.entry_id}: event {replayed.event_id} sent to {replayed.destination}"
    report(replayed, as_json, said)


@dead_letters.command()
@click.argument("entry_ids", metavar="[ID]...", nargs=-1)
@click.option("--all", "purge_all", is_flag=True, help="remove every entry")
@json_option
@pass_operator
def purge(operator: Operator, entry_ids: tuple[str, ...], purge_all: bool, as_json: bool) -> None:
    """Remove the given entries, or all of them with --all."""
    if purge_all == bool(entry_ids):
        raise click.UsageError("give the ids of the entries to remove, or --all (not both)")
    removed = operator.inspector.purge_dead_letters(None if purge_all else list(entry_ids))
    report({"purged": removed}, as_json, f"purged {removed} dead letter(s)")
