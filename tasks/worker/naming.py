"""The names an event's task goes by in Flower and the worker log, and links to them in Flower.

Every event is one ``tasks.execute`` task, so Flower's task list would show a column of
identical names. Celery lets a message carry a display name of its own (the ``shadow`` option of
``apply_async``): the worker logs and reports the task under it while routing, the registered
task and the fault suite keep using ``tasks.execute``. :func:`task_name` builds that name from
the event, for example::

    arvo.orc.inc · arvo.orc.inc/1a2b3c4d         init event of an increment workflow
    com.inc.value · arvo.orc.inc/1a2b3c4d        a call to the service com.inc.value
    evt.inc.value.success · arvo.orc.inc/1a2b3c4d    the service's reply

that is, the event type, then the workflow: the orchestrator named by the subject and
:func:`short_workflow_id`, the first 8 hex digits of the subject's SHA-256. When an event goes
to neither its type's namesake nor the subject's orchestrator, ``→ <destination>`` follows
the type. A subject that is not an orchestration subject gives the short id alone.

Every publication goes through :meth:`tasks.worker.task.EventTask.apply_async` (the runtime's
``publish``, the client's ``send_event``, Celery's retries), which calls :func:`task_name`, so
this module is the one place the name is decided. The dashboard links to a workflow's tasks with
:func:`flower_task_filter_url`: Flower's ``/tasks`` page turns its ``name`` query parameter into
the search ``name:<value>``, a case-insensitive substring match on the task name (flower 2.2
``static/js/flower.js`` and ``utils/search.py``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

from orchestrator.errors import InvalidSubject, OrchestratorError
from orchestrator.event import ArvoEvent
from orchestrator.subject import OrchestrationSubject

#: Hex digits of the short workflow id: 32 bits, unique enough among the tasks Flower keeps.
SHORT_ID_LENGTH = 8
#: Longest text kept of each part of a name (type, orchestrator, destination).
MAX_PART_LENGTH = 48
#: Upper bound of a name's length: three clipped parts, the short id and the separators.
MAX_NAME_LENGTH = 3 * MAX_PART_LENGTH + SHORT_ID_LENGTH + 8

_SEPARATOR = " · "
_ARROW = " → "
#: What Flower's search reads as one plain term: no spaces, quotes, parentheses or colons.
_SEARCHABLE = re.compile(r"\A[A-Za-z0-9._/-]+\Z")


class InvalidFlowerUrl(OrchestratorError, ValueError):
    """The base URL given for Flower is not an absolute ``http(s)://host[:port][/path]`` URL."""


#: Subjects whose name parts are remembered: every publish of a step names the same workflow, and
#: parsing a subject (base64, zlib, JSON) cost more than the rest of the name.
NAME_CACHE_SIZE = 4096


@lru_cache(maxsize=NAME_CACHE_SIZE)
def short_workflow_id(subject: str) -> str:
    """The first 8 hex digits of the SHA-256 of ``subject``: the same for every task of a workflow.

    The subject travels unchanged on every event of its workflow, so hashing its text (rather
    than its decoded content) needs no parsing and works for any subject at all.
    """
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:SHORT_ID_LENGTH]


def workflow_label(subject: str) -> str:
    """``<orchestrator>/<short id>`` for an orchestration subject, else the short id alone."""
    return _label(subject, _orchestrator_name(subject))


def task_name(event: ArvoEvent | Mapping[str, Any] | Any) -> str | None:
    """The display name of the task that carries ``event``; None when it is not an event.

    Args:
        event: an ArvoEvent, or its JSON mapping (what a retry republishes).

    Returns:
        ``<type>[ → <to>] · <workflow label>``: one printable line of at most
        :data:`MAX_NAME_LENGTH` characters; None for anything without a type and a subject
        (Celery then shows ``tasks.execute``).
    """
    event_type, to, subject = (event_field(event, name) for name in ("type", "to", "subject"))
    if not isinstance(event_type, str) or not event_type or not isinstance(subject, str):
        return None
    orchestrator = _orchestrator_name(subject)
    name = _clip(event_type)
    if isinstance(to, str) and to and to not in (event_type, orchestrator):
        name += _ARROW + _clip(to)
    return name + _SEPARATOR + _label(subject, orchestrator)


def flower_task_filter_url(flower_base: str, subject: str) -> str:
    """The URL of Flower's task list showing only the tasks of the workflow ``subject``.

    Args:
        flower_base: where Flower is served, e.g. ``http://127.0.0.1:5555`` (a path prefix such
            as ``https://ops.example/flower`` is kept).
        subject: the workflow's subject.

    Raises:
        InvalidFlowerUrl: ``flower_base`` is not an absolute http(s) URL.
    """
    parts = urlsplit(flower_base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidFlowerUrl(
            f"flower_base={flower_base!r}: must be an absolute http:// or https:// URL with a host "
            "and no query or fragment"
        )
    label = workflow_label(subject)
    term = label if _SEARCHABLE.fullmatch(label) else short_workflow_id(subject)
    return f"{flower_base.rstrip('/')}/tasks?name={quote(term, safe='')}"


def event_field(value: Any, name: str) -> Any:
    """Field ``name`` of an ArvoEvent or of its JSON mapping; None for anything else."""
    if isinstance(value, ArvoEvent):
        return getattr(value, name)
    if isinstance(value, Mapping):
        return value.get(name)
    return None


def _label(subject: str, orchestrator: str | None) -> str:
    short = short_workflow_id(subject)
    return f"{_clip(orchestrator)}/{short}" if orchestrator else short


@lru_cache(maxsize=NAME_CACHE_SIZE)
def _orchestrator_name(subject: str) -> str | None:
    try:
        return OrchestrationSubject.parse(subject).orchestrator.name
    except InvalidSubject:
        return None


def _clip(text: str) -> str:
    """``text`` on one printable line, cut to :data:`MAX_PART_LENGTH` characters."""
    printable = "".join(char if char.isprintable() else "?" for char in text[: MAX_PART_LENGTH + 1])
    if len(printable) <= MAX_PART_LENGTH:
        return printable
    return printable[: MAX_PART_LENGTH - 1] + "…"

