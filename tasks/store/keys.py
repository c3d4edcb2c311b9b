"""Every Redis key the runtime reads or writes, in one place.

Nothing else in the project spells a key: the memory, the lock, the broker transport, the
consumer, the client helpers and the tests all call these functions, so the schema below is the
whole truth.

Key schema (``<s>`` is the orchestration subject, used verbatim)::

    orch:{<s>}:record            hash   version -> int as decimal string,
                                        blob    -> msgpack of the record (JSON types only)
    orch:{<s>}:consumed          set    ids of events already applied to the subject
    orch:{<s>}:outbox            hash   event id -> msgpack list of the events that step produced,
                                        present until they are published (``settle``)
    orch:{<s>}:timers            hash   timer id -> msgpack of the timer's event, while pending
    orch:{<s>}:history           list   msgpack history entries of the workflow, oldest first,
                                        capped (LTRIM to ``history_limit``), expiring with the record
    orch:{<s>}:summary           hash   the workflow's search index row: orchestrator, version,
                                        status, started, updated (epoch ms), parent ("" for none),
                                        and once finished ``expires`` (epoch ms the record expires)
    orch:index:all               zset   subjects of every workflow, scored by updated ms
    orch:index:status:<status>   zset   subjects by updated ms, one set per status: a workflow is
                                        in exactly one (the write script moves it)
    orch:index:orch:<name>       zset   subjects of one orchestrator by updated ms
    orch:index:orch:<name>:<ver> zset   subjects of one orchestrator version by updated ms
    orch:index:parent:<p>        zset   subjects of the children of workflow <p> by updated ms
    orch:index:expiring          zset   "<s>|<status>|<name>|<version>|<parent>" of finished
                                        workflows, scored by when their keys expire (epoch ms):
                                        the work list of sweep_index.lua
    orch:replays:<event id>      string replays of a dead-lettered event being replayed (1 day),
                                        stamped on its new dead letter if it fails again
    orch:timers                  zset   "<s>|<timer id>" scored by due time (epoch ms): the
                                        timers of every workflow, claimed by the workers
    orch:timers:claimed          zset   "<s>|<timer id>" scored by claim time (epoch ms): claimed
                                        but not yet published; re-queued if left too long
    lock:orch:{<s>}              string python-redis-lock lock; value = the holder's lease token
    lock-signal:orch:{<s>}       list   python-redis-lock wake-up signal (written on release)
    orch:attempts:<id>           string delivery attempt counter of a message (poison detection)
    orch:deadletter              stream dead-lettered events with the reason and the time
    orch:outbox:<destination>    stream events for destinations with no handler in this deployment
    _orch.signal.<queue>         list   broker Redis: one entry per publish to <queue>, popped by
                                        idle consumers of the reliable transport to wake up

Why the ``{<s>}`` hash tag: the write script touches the record, consumed set, outbox hash and
lock key of one subject in one call, and Redis Cluster only allows that when all keys hash to the
same slot. A subject is base64 text, which never contains braces, so the tag is exactly the
subject. On a single Redis the braces are just characters.

The search index. Per-workflow keys (history, summary) carry the ``{<s>}`` tag like the record,
so on a Redis Cluster they live in the workflow's slot. The cross-workflow index is a few sorted
sets, all scored by the last update, so a listing is a ``ZREVRANGEBYSCORE`` of the most selective
one with the other filters checked on the summary hashes. Redis does not expire set members: a
finished workflow's members are removed by ``sweep_index.lua`` once its keys expired (its
``orch:index:expiring`` member names the sets holding it, since its summary is gone by then), and
a listing that meets a member whose summary is gone or past ``expires`` skips it and removes it. The write script
touches the cross-workflow sets in the same call as the record, as it already does the timer
index: on a Cluster these few keys would need a slot of their own and a second call.

python-redis-lock prepends ``lock:`` (and ``lock-signal:``) to the name it is given, so
:func:`lock_name` is what the lock is constructed with and :func:`lock_key` is the key the write
script compares against the lease token.
"""

from __future__ import annotations

#: Prefix of every key owned by this project (python-redis-lock adds its own ``lock:`` prefix).
PREFIX = "orch"

#: Prefix python-redis-lock puts before a lock name to form the lock key.
LOCK_KEY_PREFIX = "lock:"

#: Prefix python-redis-lock puts before a lock name to form its signal list key.
LOCK_SIGNAL_PREFIX = "lock-signal:"

#: The dead-letter stream.
DEAD_LETTER_STREAM = f"{PREFIX}:deadletter"

#: Prefix of the per-destination outbox streams (the destination is appended).
OUTBOX_STREAM_PREFIX = f"{PREFIX}:outbox:"

#: Prefix of the broker's per-queue wake-up signal lists (not a kombu key, so no clash).
QUEUE_SIGNAL_PREFIX = "_orch.signal."


def _subject_tag(subject: str) -> str:
    if not subject:
        raise ValueError("A subject is required to build its Redis keys")
    return f"{PREFIX}:{{{subject}}}"


def record(subject: str) -> str:
    """Hash holding the record ``blob`` and its ``version``."""
    return f"{_subject_tag(subject)}:record"


def consumed(subject: str) -> str:
    """Set of the event ids already applied to ``subject`` (idempotent redelivery)."""
    return f"{_subject_tag(subject)}:consumed"


def outbox(subject: str) -> str:
    """Hash of unpublished step outboxes, field = the id of the event that produced them."""
    return f"{_subject_tag(subject)}:outbox"


def timers(subject: str) -> str:
    """Hash of ``subject``'s pending timers: timer id -> msgpack of the event that fires it."""
    return f"{_subject_tag(subject)}:timers"


#: The text before and after the subject in :func:`timers` (claim_timers.lua builds the name).
TIMERS_KEY_PARTS = (f"{PREFIX}:{{", "}:timers")


#: The cross-workflow timer index (zset of ``timer_member`` by due time, epoch ms).
TIMER_INDEX = f"{PREFIX}:timers"

#: Timers claimed for firing and not yet published (zset by claim time, epoch ms).
TIMER_CLAIMS = f"{PREFIX}:timers:claimed"

#: Separates the subject from the timer id in a timer index member (never in a subject).
TIMER_MEMBER_SEPARATOR = "|"


def timer_member(subject: str, timer_id: str) -> str:
    """The member naming one workflow's timer in :data:`TIMER_INDEX` and :data:`TIMER_CLAIMS`."""
    return f"{subject}{TIMER_MEMBER_SEPARATOR}{timer_id}"


def history(subject: str) -> str:
    """List of the workflow's history entries (msgpack), oldest first."""
    return f"{_subject_tag(subject)}:history"


def summary(subject: str) -> str:
    """Hash of the workflow's search index row."""
    return f"{_subject_tag(subject)}:summary"


#: Prefix of the cross-workflow index sorted sets.
INDEX_PREFIX = f"{PREFIX}:index:"

#: Every workflow by updated ms.
INDEX_ALL = f"{INDEX_PREFIX}all"

#: Finished workflows by when their record expires (epoch ms).
INDEX_EXPIRING = f"{INDEX_PREFIX}expiring"

#: Prefix of the per-status sets (the status is appended; the write script builds the old one).
INDEX_STATUS_PREFIX = f"{INDEX_PREFIX}status:"

#: Prefix of the per-orchestrator sets.
INDEX_ORCHESTRATOR_PREFIX = f"{INDEX_PREFIX}orch:"

#: Prefix of the per-parent sets.
INDEX_PARENT_PREFIX = f"{INDEX_PREFIX}parent:"

#: Separates the fields of an :data:`INDEX_EXPIRING` member (never in a subject, name or version).
INDEX_MEMBER_SEPARATOR = "|"


def index_status(status: str) -> str:
    """Sorted set of the workflows with ``status``."""
    return INDEX_STATUS_PREFIX + status


def index_orchestrator(name: str, version: str | None = None) -> str:
    """Sorted set of the workflows of orchestrator ``name`` (of one ``version`` when given)."""
    return f"{INDEX_ORCHESTRATOR_PREFIX}{name}" + (f":{version}" if version is not None else "")


def index_parent(parent_subject: str) -> str:
    """Sorted set of the child workflows of ``parent_subject``."""
    return INDEX_PARENT_PREFIX + parent_subject


def replays(event_id: str) -> str:
    """How many times the dead-lettered event ``event_id`` has been replayed (short-lived)."""
    return f"{PREFIX}:replays:{event_id}"


def lock_name(subject: str) -> str:
    """Name given to ``redis_lock.Lock``; the library turns it into :func:`lock_key`."""
    return _subject_tag(subject)


def lock_key(subject: str) -> str:
    """The Redis key python-redis-lock sets, whose value is the holder's token."""
    return LOCK_KEY_PREFIX + lock_name(subject)


def lock_signal(subject: str) -> str:
    """The list python-redis-lock pushes to on release, to wake blocking waiters."""
    return LOCK_SIGNAL_PREFIX + lock_name(subject)


def release_lock_keys(subject: str) -> list[str]:
    """KEYS of release_lock.lua, in its order (the lock, its signal, outbox, history, record)."""
    return [lock_key(subject), lock_signal(subject), outbox(subject), history(subject), record(subject)]


def attempts(message_id: str) -> str:
    """Counter of delivery attempts of one message, so a poison message can be quarantined."""
    if not message_id:
        raise ValueError("A message id is required to build its attempt counter key")
    return f"{PREFIX}:attempts:{message_id}"


def outbox_stream(destination: str) -> str:
    """Stream receiving the events addressed to ``destination`` (an event's ``to``)."""
    if not destination:
        raise ValueError("A destination is required to build its outbox stream key")
    return OUTBOX_STREAM_PREFIX + destination


def queue_signal(queue: str) -> str:
    """The broker list that wakes idle consumers of ``queue`` (see tasks.worker.kombu_redis)."""
    return QUEUE_SIGNAL_PREFIX + queue
