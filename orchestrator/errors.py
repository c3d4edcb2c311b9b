"""The one exception hierarchy of the project.

Every error the library raises on purpose derives from :class:`OrchestratorError`, and every
error says whether trying again can help (:attr:`OrchestratorError.retryable`): the Celery
runtime maps that single flag to "retry with backoff" or "dead-letter", so nothing else has to
know the tree.

::

    OrchestratorError
    ├── DefinitionError                 bad contract / machine / handler definition (import time)
    ├── UnhandledSystemError            a service's sys.*.error that no transition handles (fails the step)
    ├── ViolationError                  Arvo violations: re-raised, never turned into events
    │   ├── ContractViolation           event data or dataschema does not match the contract
    │   ├── ConfigViolation             wrong handler, unknown version, unresolvable machine
    │   ├── ExecutionViolation          invalid subject, bad parentSubject$$, machine misuse
    │   └── TransactionViolation        lock / read / write of machine memory failed (retryable)
    ├── DecodeError                     a message on the wire that is not an ArvoEvent
    ├── InvalidSubject                  not an ArvoOrchestrationSubject, or an empty subject
    ├── InvalidRecord                   a memory was asked to store no record
    ├── WorkflowNotFound                no workflow with that subject (cancel, inspect)
    ├── WorkflowFinished                the workflow already ended (a cancel comes too late)
    ├── DeadlineExceeded                a service call got no reply in time (sent as its sys error)
    ├── WorkflowCancelled               a workflow was cancelled (reported as its sys error)
    ├── NotCompilable                   a machine the compiled engine does not cover (it falls back)
    ├── ExpectedRetry                   normal operation, not a failure: try again later (one line why)
    │   └── tasks.runtime.RetryLater    try this message again later (lock busy, Redis down)
    ├── tasks.client.WorkflowTimeout    a workflow sent nothing back in time (retryable)
    └── tasks.worker.startup.StartupError  a worker's Redis refuses it for good (exit 78)

The last three belong to the Celery runtime and live there, so the core never imports it; they
derive from :class:`OrchestratorError` all the same. ``InvalidSubject``, ``InvalidRecord``,
``DecodeError`` and ``DefinitionError`` are also ``ValueError`` s.

``ViolationError`` mirrors arvo-event-handler's structural violation check: it carries
``violation_type`` and its ``str()`` is ``ViolationError<Type> message``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any


class OrchestratorError(Exception):
    """Base class of every error raised by this project on purpose."""

    #: Whether the same input may succeed if tried again later.
    retryable: bool = False


class DefinitionError(OrchestratorError, ValueError):
    """A contract, machine or handler is defined wrongly; raised when it is built."""


class DecodeError(OrchestratorError, ValueError):
    """Bytes or a mapping received from the wire cannot be read as an ArvoEvent."""


class ViolationError(OrchestratorError):
    """An Arvo violation: it propagates to the caller instead of becoming a system error event.

    Args:
        message: what went wrong, naming the field and the rule.
        metadata: optional structured details (for logs and the dead-letter store).
    """

    violation_type: str = "Violation"

    def __init__(self, message: str, metadata: dict[str, Any] | None = None) -> None:
        self.raw_message = message
        self.metadata = metadata
        super().__init__(f"ViolationError<{self.violation_type}> {message}")

    @property
    def name(self) -> str:
        """The Arvo error name, e.g. ``ViolationError<Contract>``."""
        return f"ViolationError<{self.violation_type}>"

    @property
    def message(self) -> str:
        """The full message, ``ViolationError<Type> ...``."""
        return str(self)


class ContractViolation(ViolationError):
    """Event data, dataschema or emitted payload does not satisfy the contract."""

    violation_type = "Contract"


class ConfigViolation(ViolationError):
    """The event reached a handler/orchestrator that is not configured for it."""

    violation_type = "Config"


class ExecutionViolation(ViolationError):
    """The event cannot be executed as given (invalid subject, invalid parent subject...)."""

    violation_type = "Execution"


class TransactionCause(StrEnum):
    """Why a machine-memory transaction failed (arvo ``TransactionViolationCause``)."""

    LOCK_FAILURE = "LOCK_MACHINE_MEMORY_FAILURE"
    LOCK_UNACQUIRED = "LOCK_UNACQUIRED"
    READ_FAILURE = "READ_MACHINE_MEMORY_FAILURE"
    WRITE_FAILURE = "WRITE_MACHINE_MEMORY_FAILURE"
    WRITE_CONFLICT = "WRITE_CONFLICT"
    INVALID_SUBJECT = "INVALID_SUBJECT"


class TransactionViolation(ViolationError):
    """Machine memory could not be locked, read or written: the event must be tried again.

    Args:
        cause: which transaction step failed.
        message: human readable details.
        metadata: optional details (the initiating event, the subject...).
    """

    violation_type = "OrchestratorTransaction"

    def __init__(
        self, cause: TransactionCause, message: str, metadata: dict[str, Any] | None = None
    ) -> None:
        self.cause = cause
        super().__init__(f"[{cause.value}] {message}", metadata)

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """Lock, read, write and conflict failures are transient; a bad subject is not."""
        return self.cause is not TransactionCause.INVALID_SUBJECT


def is_violation(error: BaseException) -> bool:
    """True when ``error`` must propagate rather than become a system error event."""
    return isinstance(error, ViolationError)


def is_transaction_violation(error: BaseException, cause: TransactionCause | None = None) -> bool:
    """True for a :class:`TransactionViolation`, optionally of the given ``cause``."""
    return isinstance(error, TransactionViolation) and (cause is None or error.cause is cause)


class InvalidSubject(OrchestratorError, ValueError):
    """A string is not a valid ArvoOrchestrationSubject, or subject content is invalid."""


class WorkflowNotFound(OrchestratorError, LookupError):
    """No workflow is stored under the given subject (never started, or expired)."""


class WorkflowFinished(OrchestratorError):
    """The workflow already ended (done, failed or cancelled), so it cannot be cancelled."""


class DeadlineExceeded(OrchestratorError):
    """A service call got no reply by its deadline; its machine receives it as the call's system error."""


class WorkflowCancelled(OrchestratorError):
    """The workflow was cancelled; its parent or initiator receives this as its system error."""


class ExpectedRetry(OrchestratorError):
    """A message must be tried again later as part of normal operation, not because it failed.

    A busy subject lock, a write conflict or a Redis that is briefly unreachable: the retry is
    how the system works, so what an operator reads (Flower's exception column, the worker log)
    is one line saying why, never a traceback. ``str()`` is that line (whitespace, newlines
    included, collapsed to single spaces) and ``repr()`` is ``ExpectedRetry: <line>``, which
    Celery reports as the retry's exception.

    Args:
        reason: why the message is retried, e.g. ``lock busy: ...``.
    """

    retryable = True

    def __init__(self, reason: str) -> None:
        super().__init__(" ".join(str(reason).split()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}: {self}"


class NotCompilable(OrchestratorError):
    """A machine class uses a feature the compiled engine does not cover.

    Never reaches a caller: the engine catches it once per class and runs that machine on
    python-statemachine's own engine. The message names the feature, for the engine's log.
    """


class InvalidRecord(OrchestratorError, ValueError):
    """A machine memory was asked to write no record (Arvo: "Data is required")."""


class UnhandledSystemError(OrchestratorError):
    """A service's system error (``sys.*.error``) reached a machine with no transition for it.

    Not a violation: the step fails like an error in user code (the failure record keeps the
    last good state, the parent or initiator gets the workflow's system error), since a machine
    that ignores the error would wait forever for a reply that will never come. Machines that
    mean to ignore such errors say so with ``ArvoMachine.ignore_unhandled_system_errors``.

    Args:
        event_type: the system error's type, e.g. ``sys.com.value.read.error``.
        data: the error payload (``errorName``, ``errorMessage``, ``errorStack``).
        machine: the machine class's name.
        configuration: the active state ids the event found.
    """

    def __init__(
        self, event_type: str, data: Mapping[str, Any], machine: str, configuration: Sequence[str]
    ) -> None:
        self.event_type = event_type
        self.error_name = data.get("errorName")
        self.error_message = data.get("errorMessage")
        self.configuration = tuple(configuration)
        super().__init__(
            f"{machine} has no transition for the system error '{event_type}' in configuration "
            f"{list(self.configuration)} ({self.error_name}: {self.error_message}); handle it in the "
            "machine, or set ignore_unhandled_system_errors = True to ignore such errors"
        )


class InvalidFilter(OrchestratorError, ValueError):
    """A workflow search filter is malformed; the message names the field and the rule."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"filter {field}: {rule}")


class WorkflowNotFailed(OrchestratorError):
    """A retry was asked for a workflow that is not failed (running, done or cancelled)."""


class DeadLetterNotFound(OrchestratorError, LookupError):
    """No dead letter has the given id (never stored, already replayed or purged)."""
