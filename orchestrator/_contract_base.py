"""Names, dataschema strings and the schemas that every contract is built from.

The ``arvo.orc`` type names, ``<uri>/<version>`` dataschemas, the system error payload
(:class:`ArvoErrorSchema`) and the ``parentSubject$$`` base of orchestrator init events.

Private to :mod:`orchestrator.contract`, which re-exports every public name here; split out
only to keep modules small. Nothing in here knows about contract objects.
"""

from __future__ import annotations

import inspect
import traceback
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, create_model

from orchestrator._validation import SEMVER_RE, TYPE_RE
from orchestrator.errors import DefinitionError

#: Event types starting with this are reserved for orchestrators (a plain string prefix).
ORCHESTRATOR_PREFIX = "arvo.orc"
#: The key of an orchestrator init event that carries the parent subject (or null at the root).
PARENT_SUBJECT_KEY = "parentSubject$$"


def is_type(value: object) -> bool:
    """True for a str event type (``TYPE_RE`` matched the JavaScript way)."""
    # fullmatch: Python's ``$`` also matches before a trailing newline, JavaScript's does not.
    return isinstance(value, str) and TYPE_RE.fullmatch(value) is not None


def is_semver(value: object) -> bool:
    """True for a str ``X.Y.Z`` version (``SEMVER_RE`` matched the JavaScript way)."""
    # isascii: Python's ``\d`` also matches non-ASCII digits; fullmatch: see is_type.
    return isinstance(value, str) and value.isascii() and SEMVER_RE.fullmatch(value) is not None


def semver_key(version: str) -> tuple[int, int, int]:
    """Sort key ordering versions numerically by major, minor, patch."""
    major, minor, patch = version.split(".")
    return int(major), int(minor), int(patch)


def init_type(name: str) -> str:
    """The init event type of orchestrator ``name``, ``arvo.orc.<name>``."""
    return f"{ORCHESTRATOR_PREFIX}.{name}"


def complete_type(name: str) -> str:
    """The completion event type of orchestrator ``name``, ``arvo.orc.<name>.done``."""
    return f"{init_type(name)}.done"


def system_error_type(name: str) -> str:
    """The system error type of orchestrator ``name``, ``sys.arvo.orc.<name>.error``.

    Any contract's system error type is ``sys.<contract type>.error``; this helper is the
    orchestrator case, where the contract type is :func:`init_type` of the name.
    """
    return sys_error_type(init_type(name))


def sys_error_type(contract_type: str) -> str:
    """The system error type of any contract, ``sys.<contract type>.error``."""
    return f"sys.{contract_type}.error"


def is_orchestrator_type(event_type: str) -> bool:
    """True when ``event_type`` is in the orchestrator namespace (prefix ``arvo.orc``)."""
    return event_type.startswith(ORCHESTRATOR_PREFIX)


def build_dataschema(uri: str, version: str) -> str:
    """The ``dataschema`` of events built against ``uri`` at ``version``: ``<uri>/<version>``."""
    return f"{uri}/{version}"


def parse_dataschema(value: str | None) -> tuple[str, str] | None:
    """Split a dataschema into ``(uri, version)``; ``None`` when it is not one.

    As in Arvo the last ``/``-separated segment must be a semantic version and the rest is the
    uri, which may be empty (``"1.0.0"`` gives ``("", "1.0.0")``, spec 10.11). Never raises.
    """
    if not isinstance(value, str):
        return None
    uri, _, version = value.rpartition("/")
    return (uri, version) if is_semver(version) else None


def is_valid_dataschema(value: str | None) -> bool:
    """True when :func:`parse_dataschema` can read ``value``."""
    return parse_dataschema(value) is not None


# --------------------------------------------------------------------------- system errors


class ArvoErrorSchema(BaseModel):
    """The data of every ``sys.<type>.error`` event; all three keys are required."""

    errorName: str = Field(description="The name of the error.")
    errorMessage: str = Field(description="A descriptive message for the error.")
    errorStack: str | None = Field(description="The stack trace of the error.")


def _error_name(exc: BaseException) -> str:
    # Only a ``name`` declared by the class (a property such as ViolationError.name, or a str
    # class attribute) is an error name: AttributeError, NameError and ImportError carry an
    # *instance* ``name`` that is the missing attribute or module, not the error's name.
    declared = inspect.getattr_static(type(exc), "name", None)
    if isinstance(declared, property | str):
        name = getattr(exc, "name", None)
        if isinstance(name, str) and name:
            return name
    return type(exc).__name__


def create_arvo_error(exc: BaseException) -> dict[str, str | None]:
    """Arvo ``createArvoError``: the system error payload describing ``exc``.

    ``errorStack`` follows the JavaScript shape so that both sides read alike: a first line
    ``<errorName>: <errorMessage>`` and then the Python traceback (with chained causes). An
    exception that was never raised has no traceback, which plays the part of
    ``stack === undefined`` and gives ``None``.
    """
    name = _error_name(exc)
    message = str(exc)
    stack: str | None = None
    if exc.__traceback__ is not None:
        stack = f"{name}: {message}\n" + "".join(traceback.format_exception(exc)).rstrip("\n")
    return {"errorName": name, "errorMessage": message, "errorStack": stack}


class OrchestrationInitBase(BaseModel):
    """Arvo ``OrchestrationInitEventBaseSchema``: the key every orchestrator init must carry.

    ``parentSubject$$`` is required but nullable: ``None`` starts a root orchestration, a
    subject string starts a child of that subject. Python code may use ``parent_subject``.
    """

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    parent_subject: Annotated[str, Field(min_length=1)] | None = Field(
        alias="parentSubject$$",
        description=(
            "Subject of the parent orchestration that started this one, or null for a root "
            "orchestration. The orchestrator sends its completion event back under this subject."
        ),
    )


def merge_init(init: type[BaseModel]) -> type[BaseModel]:
    """zod ``base.merge(init)``: the base key first, then the init keys; init keys win.

    Raises:
        DefinitionError: the init model has a ``parent_subject`` field under another wire name,
            which would silently drop ``parentSubject$$`` from the accepted schema.
    """
    for name, field in init.model_fields.items():
        if PARENT_SUBJECT_KEY in (name, field.alias, field.validation_alias):
            return init  # the init model declares the key itself and overrides the base
        if name == "parent_subject":
            raise DefinitionError(
                f"The init model {init.__name__} has a field 'parent_subject' that is not "
                f"'{PARENT_SUBJECT_KEY}'; rename it, it would hide the parent subject key"
            )
    # Init first in the MRO: its fields and config win; the base field still comes first.
    merged: type[BaseModel] = create_model(
        init.__name__, __base__=(init, OrchestrationInitBase), __module__=init.__module__
    )
    return merged
