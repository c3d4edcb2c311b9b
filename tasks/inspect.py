"""RedisInspector: the :class:`~orchestrator.inspection.WorkflowInspector` of a deployment.

It reads the state Redis (records, histories, the search index of :mod:`tasks.store.index`,
the dead-letter stream) and needs Celery only to send: a retry, a dead-letter replay and a
cancellation are events published like any other (:func:`tasks.client.send_event`), so the
workers apply them with every guarantee of a step. Tools build one with
:func:`inspector_from_settings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.settings import Settings
from orchestrator.description import describe
from orchestrator.errors import DeadLetterNotFound, WorkflowNotFound
from orchestrator.event import decode_event
from orchestrator.history import retry_event
from orchestrator.inspection import (
    DeadLetterEntry,
    HistoryEntry,
    Page,
    Replayed,
    WorkflowDescription,
    WorkflowFilter,
)
from orchestrator.record import WorkflowRecord
from orchestrator.search import check_limit
from tasks.client import cancel_workflow, send_event
from tasks.store.codec import unpack
from tasks.store.connections import StateRedis, redis_client
from tasks.store.index import RedisIndex
from tasks.store.keys import KeySpace
from tasks.store.streams import DeadLetter, DeadLetterStore
from tasks.worker.app import create_app

if TYPE_CHECKING:
    from celery import Celery


class RedisInspector:
    """Inspect and steer the workflows of one deployment.

    Args:
        settings: the deployment settings (stream cap, history cap).
        client: a ``redis.Redis`` (or ``RedisCluster``) on ``settings.redis_url`` with
            ``decode_responses=False``.
        app: the deployment's Celery app, to send retries, replays and cancellations.
    """

    def __init__(self, settings: Settings, client: StateRedis, app: Celery) -> None:
        self.settings = settings
        self.client = client
        self.app = app
        self.keys = KeySpace(settings.redis_shard_count)
        self.index = RedisIndex(client, self.keys)
        self.dead_letter_store = DeadLetterStore(client, settings.stream_maxlen, self.keys)

    # -- reading ---------------------------------------------------------------------------------

    def _read(self, subject: str) -> tuple[WorkflowRecord, int]:
        version, blob = self.client.hmget(self.keys.record(subject), ["version", "blob"])  # type: ignore[misc]
        if not isinstance(blob, bytes):
            raise WorkflowNotFound(f"no workflow with subject '{subject}' (never started, or expired)")
        return WorkflowRecord.from_dict(unpack(blob)), int(version or 0)

    def describe(self, subject: str) -> WorkflowDescription:
        """The workflow stored under ``subject``. Raises ``WorkflowNotFound``."""
        _check_subject(subject)
        record, _ = self._read(subject)
        return describe(record, self.index.row(subject))

    def history(self, subject: str, limit: int | None = None) -> list[HistoryEntry]:
        """Its steps, oldest first (the newest ``limit``). Raises ``WorkflowNotFound``."""
        _check_subject(subject)
        if limit is not None and limit <= 0:
            return []
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self.keys.record(subject))
        pipe.lrange(self.keys.history(subject), -limit if limit is not None else 0, -1)
        exists, stored = pipe.execute()
        if not exists:
            raise WorkflowNotFound(f"no workflow with subject '{subject}' (never started, or expired)")
        return [HistoryEntry.from_dict(unpack(entry)) for entry in stored]

    def list_workflows(self, where: WorkflowFilter, limit: int = 50, cursor: str | None = None) -> Page:
        """Workflows matching ``where``, most recently updated first. Raises ``InvalidFilter``."""
        check_limit(limit)
        return self.index.list(where, limit, cursor)

    def count(self, where: WorkflowFilter) -> int:
        """How many workflows match ``where``."""
        return self.index.count(where)

    # -- dead letters ------------------------------------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[DeadLetterEntry]:
        """The oldest ``limit`` dead letters."""
        return [_entry(letter) for letter in self.dead_letter_store.read(limit)]

    def dead_letter(self, entry_id: str) -> DeadLetterEntry:
        """One dead letter. Raises ``DeadLetterNotFound``."""
        return _entry(self._letter(entry_id))

    def _letter(self, entry_id: str) -> DeadLetter:
        letter = self.dead_letter_store.get(entry_id)
        if letter is None:
            raise DeadLetterNotFound(f"no dead letter with id '{entry_id}' (never stored, replayed or purged)")
        return letter

    def replay_dead_letter(self, entry_id: str) -> Replayed:
        """Send the entry's event again, then remove the entry (only once the send succeeded).

        If the replayed event fails again, the runtime stores a new entry with its new reason
        and one more replay counted. Raises ``DeadLetterNotFound``; ``DecodeError`` when the
        entry holds no valid event (it is kept).
        """
        letter = self._letter(entry_id)
        event = decode_event(letter.payload)
        self.dead_letter_store.mark_replay(event.id, letter.replays + 1)
        send_event(event, self.app)
        self.dead_letter_store.delete([entry_id])
        return Replayed(entry_id=entry_id, event_id=event.id, destination=event.to or "")

    def purge_dead_letters(self, entry_ids: list[str] | None = None) -> int:
        """Remove the given entries (all when None); how many were removed."""
        if entry_ids is None:
            return self.dead_letter_store.purge()
        return self.dead_letter_store.delete(entry_ids)

    # -- steering ----------------------------------------------------------------------------------

    def retry(self, subject: str) -> str:
        """Send the retry of a failed workflow (see :func:`orchestrator.history.retry_event`).

        Returns the retry event's id. Raises ``WorkflowNotFound``, ``WorkflowNotFailed``.
        """
        _check_subject(subject)
        record, version = self._read(subject)
        event = retry_event(record, version)
        send_event(event, self.app)
        return event.id

    def cancel(self, subject: str, reason: str) -> None:
        """Cancel a running workflow. Raises ``WorkflowNotFound``, ``WorkflowFinished``."""
        cancel_workflow(subject, reason, app=self.app)


def _check_subject(subject: str) -> None:
    if not isinstance(subject, str) or not subject:
        raise WorkflowNotFound(f"'{subject}' is not a workflow subject")


def _entry(letter: DeadLetter) -> DeadLetterEntry:
    payload = letter.payload
    event = payload if isinstance(payload, dict) else {}
    event_type, subject = event.get("type"), event.get("subject")
    return DeadLetterEntry(
        id=letter.id,
        reason=letter.reason,
        error=letter.error,
        payload=payload,
        at_ms=int(letter.at * 1000),
        task_id=letter.task_id,
        event_type=event_type if isinstance(event_type, str) else None,
        subject=subject if isinstance(subject, str) else None,
        replays=letter.replays,
    )


def inspector_from_settings(settings: Settings | None = None, app: Celery | None = None) -> RedisInspector:
    """A :class:`RedisInspector` of the deployment the ``ORCH_*`` settings describe.

    Args:
        settings: the settings; None reads the ``ORCH_*`` environment.
        app: the Celery app to send with; None builds one from ``settings``.
    """
    settings = settings if settings is not None else Settings()
    return RedisInspector(settings, redis_client(settings), app if app is not None else create_app(settings))
