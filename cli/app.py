"""The root of the command line (click): ``demo``, ``workflows``, ``dead-letters``, ``diagram``, ``ui``.

The commands read the deployment the ``ORCH_*`` settings name (its Redis, its broker) through
the :class:`~cli.operator.Operator` in click's context object; a caller that already has one
(the unit tests, over a ``LocalBroker``) passes it as ``obj``. Errors the operator can act on
(an unknown subject, a malformed filter, a dead letter already gone, Redis unreachable) are
printed as one line on stderr with exit status 1; usage errors exit with 2, as click does.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from cli.dashboard.command import ui
from cli.dead_letters import dead_letters
from cli.operator import Operator
from cli.workflows import cancel, workflows
from orchestrator.diagram import mermaid
from orchestrator.errors import OrchestratorError, ViolationError

#: Errors printed as one line (exit status 1) instead of a traceback: the project's own, bad
#: settings or input (``ValueError``, pydantic's validation errors included), and an unreachable
#: Redis or broker.
OPERATOR_ERRORS: tuple[type[BaseException], ...] = (
    OrchestratorError,
    ValueError,
    RedisError,
    OperationalError,
    OSError,
)


class OperatorGroup(click.Group):
    """A group that reports the operator's errors in one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OPERATOR_ERRORS as error:
            raise click.ClickException(one_line(error)) from error


def one_line(error: BaseException) -> str:
    """The error's message on one line; other than the project's errors, prefixed by its type.

    A violation is shown by its message alone: its ``ViolationError<Config>`` prefix is Arvo's
    wire convention, not news to an operator.
    """
    text = error.raw_message if isinstance(error, ViolationError) else str(error)
    message = " ".join(text.split()) or repr(error)
    return message if isinstance(error, OrchestratorError) else f"{type(error).__name__}: {message}"


@click.group(cls=OperatorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run the demo, and see and steer the workflows of the deployment named by ORCH_* settings."""
    if ctx.obj is None:
        ctx.obj = Operator.from_settings()


@cli.command()
@click.option(
    "--celery",
    is_flag=True,
    help="run through Celery workers and Redis (ORCH_* settings): the running workers if they serve "
    "every demo queue, else two workers started for the demo",
)
def demo(celery: bool) -> None:
    """Run the example workflows and print the event flow."""
    if celery:
        from cli.celery_demo import run_celery_demo

        sys.exit(run_celery_demo(sys.stdout))
    from cli.demo import run_demo

    sys.exit(run_demo(sys.stdout))


@cli.command()
@click.argument("machine")
@click.option("--subject", help="highlight this workflow's current states")
@click.option("--version", help="the machine's version (default: the workflow's, else the latest)")
@click.pass_obj
def diagram(operator: Operator, machine: str, subject: str | None, version: str | None) -> None:
    """Print the Mermaid state diagram of MACHINE, an orchestrator name (e.g. arvo.orc.fanout)."""
    active: tuple[str, ...] = ()
    if subject is not None:
        described = operator.inspector.describe(subject)
        if described.summary.orchestrator != machine:
            raise click.ClickException(
                f"workflow {subject} runs {described.summary.orchestrator}, not {machine}"
            )
        version = version or described.summary.version
        active = described.configuration
    click.echo(mermaid(operator.machine(machine, version), active), nl=False)


cli.add_command(workflows)
cli.add_command(dead_letters)
cli.add_command(cancel, name="cancel")  # the first name of `workflows cancel`, kept as an alias
cli.add_command(ui)


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (the process arguments when None); the exit status."""
    try:
        cli.main(args=argv, prog_name="python -m cli")
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    return 0
