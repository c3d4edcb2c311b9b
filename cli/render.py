"""How the operator commands print: rich tables for people, JSON for scripts.

Every command that shows something takes ``--json``: it then prints one JSON document on
stdout (the inspection dataclasses as objects, times as epoch milliseconds, as the Python API
gives them) and nothing else, so ``python -m cli workflows list --json | jq`` works. Without
it, rich lays out tables for a terminal; times are shown in UTC.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])


def json_option(command: F) -> F:
    """The ``--json`` flag of a command."""
    return click.option("--json", "as_json", is_flag=True, help="print JSON for scripts instead of tables")(
        command
    )


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses turned into dicts and tuples into lists (JSON types only)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {item.name: jsonable(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def echo_json(value: Any) -> None:
    """Print ``value`` as one JSON document."""
    click.echo(json.dumps(jsonable(value), indent=2, sort_keys=False, default=str))


def report(value: Any, as_json: bool, for_people: str | Callable[[], None]) -> None:
    """Print ``value`` as JSON for a script, else what ``for_people`` says (a line, or a printer)."""
    if as_json:
        echo_json(value)
    elif callable(for_people):
        for_people()
    else:
        click.echo(for_people)


def console() -> Console:
    """A console on the current stdout (click's, under its test runner).

    Markup, emoji codes and highlighting are off: what is printed is the stores' data as is.
    """
    return Console(highlight=False, soft_wrap=False, emoji=False, markup=False)


def when(ms: int | None) -> str:
    """Epoch milliseconds as a UTC time to the millisecond, or ``-``."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    """A table of ``rows``; a value too long for its column is folded, never cut.

    Subjects and ids are there to be copied into the next command, so no cell is shortened
    with an ellipsis (rich's default): a narrow terminal gets taller rows instead.
    """
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(_cell(value) for value in row))
    return grid


def fields(rows: Iterable[tuple[str, Any]]) -> Table:
    """A two-column table of named values (one workflow, one dead letter)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, _cell(value))
    return grid


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON, for a person."""
    return json.dumps(jsonable(value), indent=2, default=str)


def _cell(value: Any) -> Text:
    """A cell's text, never read as rich markup (event data and subjects are user input)."""
    return Text("-" if value is None else str(value))
