"""Every Redis key the runtime reads or writes, in one place.

Nothing else in the project spells a key: the memory, the lock, the broker transport, the
consumer, the client helpers and the tests all call these functions, so the schema below is the
whole truth.

Shards. A deployment's state is split into ``S`` shards (``ORCH_REDIS_SHARDS``: 1 by default
on a single Redis or a Sentinel service, 16 on a Redis Cluster). A workflow belongs to shard
``k = crc32(subject) % S`` (:meth:`KeySpace.shard_of`), and *every* key of the workflow and every
cross-workflow structure of its shard carries the shard's hash tag ``{<t>}`` (``<t>`` from
:func:`shard_tag`). So each script touches one hash slot (Redis Cluster refuses a script whose
keys span slots, ``CROSSSLOT``), the search index and the timer queue are still written by the
same call as the state they describe, and no cross-workflow key takes all the traffic: there
are ``S`` of each. The tags are chosen so their slots are evenly spaced over the 16384 slots, so
a cluster's primaries (which own contiguous slot ranges) each hold about ``S / primaries``
shards. ``S`` is part of the data layout: every worker and client of a deployment must use the
same value, and changing it moves every key. S=1 on a single Redis is the same layout with one
shard, not a second code path.

Key schema (``<s>`` is the orchestration subject, used verbatim; ``<t>`` its shard's tag)::

    orch:{<t>}:wf:<s>:record     hash   version -> int as decimal string,
                                        blob    -> msgpack of the record (JSON types only)
    orch:{<t>}:wf:<s>:consumed   set    ids of events already applied to the subject
    orch:{<t>}:wf:<s>:outbox     hash   event id -> msgpack list of the events that step produced,
                                        present until they are published (``settle``)
    orch:{<t>}:wf:<s>:timers     hash   timer id -> msgpack of the timer's event, while pending
    orch:{<t>}:wf:<s>:history    list   msgpack history entries of the workflow, oldest first,
                                        capped (LTRIM to ``history_limit``), expiring with the record
    orch:{<t>}:wf:<s>:summary    hash   the workflow's search index row: orchestrator, version,
                                        status, started, updated (epoch ms), parent ("" for none),
                                        and once finished ``expires`` (epoch ms the record expires)
    lock:orch:{<t>}:wf:<s>       string python-redis-lock lock; value = the holder's lease token
    lock-signal:orch:{<t>}:wf:<s> list  python-redis-lock wake-up signal (written on release)

  one of each per shard ``<t>``:

    orch:{<t>}:index:all               zset  subjects of the shard's workflows by updated ms
    orch:{<t>}:index:status:<status>   zset  subjects by updated ms, one set per status: a
                                             workflow is in exactly one (the write script moves it)
    orch:{<t>}:index:orch:<name>       zset  subjects of one orchestrator by updated ms
    orch:{<t>}:index:orch:<name>:<ver> zset  subjects of one orchestrator version by updated ms
    orch:{<t>}:index:parent:<p>        zset  subjects of the children of workflow <p> (in the
                                             child's shard) by updated ms
    orch:{<t>}:index:expiring          zset  "<s>|<status>|<name>|<version>|<parent>" of finished
                                             workflows, scored by when their keys expire (epoch
                                             ms): the work list of sweep_index.lua
    orch:{<t>}:timers                  zset  "<s>|<timer id>" scored by due time (epoch ms): the
                                             shard's timers, claimed by the workers
    orch:{<t>}:timers:claimed          zset  "<s>|<timer id>" scored by claim time (epoch ms):
                                             claimed but not yet published; re-queued if left too long
    orch:{<t>}:deadletter              stream dead-lettered events with the reason and the time,
                                             sharded by the event (or message) id
    orch:{<t>}:outbox:<destination>    stream events for destinations with no handler in this
                                             deployment, sharded by the event's subject

  single keys:

    orch:replays:<event id>      string replays of a dead-lettered event being replayed (1 day),
                                        stamped on its new dead letter if it fails again
    orch:attempts:<id>           string delivery attempt counter of a message (poison detection)
    _orch.signal.<queue>         list   broker Redis: one entry per publish to <queue>, popped by
                                        idle consumers of the reliable transport to wake up

A subject is base64 text, which never contains braces, so the shard tag is the only hash tag of
a key. On a single Redis the braces are just characters.

The search index. A listing merges the shards' sorted sets by score (see
:mod:`tasks.store.index`); a count sums them. Redis does not expire set members: a finished
workflow's members are removed by ``sweep_index.lua`` once its keys expired (its
``index:expiring`` member names the sets holding it, since its summary is gone by then), and a
listing that meets a member whose summary is gone or past ``expires`` skips it and removes it.

Scripts declare every key they touch in ``KEYS`` (no key name is built inside Lua), which a
Redis Cluster needs to route them: ``write_record.lua`` receives the five per-status sets of the
shard, ``claim_timers.lua`` and ``sweep_index.lua`` the keys named by the members they were asked
to process (read first, re-checked inside the script).

python-redis-lock prepends ``lock:`` (and ``lock-signal:``) to the name it is given, so
:meth:`KeySpace.lock_name` is what the lock is constructed with and :meth:`KeySpace.lock_key` is
the key the write script compares against the lease token.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from orchestrator.inspection import STATUSES

#: Prefix of every key owned by this project (python-redis-lock adds its own ``lock:`` prefix).
PREFIX = "orch"

#: Prefix python-redis-lock puts before a lock name to form the lock key.
LOCK_KEY_PREFIX = "lock:"

#: Prefix python-redis-lock puts before a lock name to form its signal list key.
LOCK_SIGNAL_PREFIX = "lock-signal:"

#: Prefix of the broker's per-queue wake-up signal lists (not a kombu key, so no clash).
QUEUE_SIGNAL_PREFIX = "_orch.signal."

#: Separates the subject from the timer id in a timer index member (never in a subject).
TIMER_MEMBER_SEPARATOR = "|"

#: Separates the fields of an ``index:expiring`` member (never in a subject, name or version).
INDEX_MEMBER_SEPARATOR = "|"

#: Most shards a deployment may have (each costs a key per cross-workflow structure).
MAX_SHARDS = 1024


@cache
def shard_tag(shard: int, shards: int) -> str:
    """The hash tag text of shard ``shard`` of ``shards``: ``s<shard>`` or ``s<shard>.<n>``.

    The first candidate whose cluster slot falls in the shard's share of the slot range
    (``[shard, shard + 1) * 16384 / shards``), so the shards' slots are evenly spaced and a
    cluster's primaries hold about equally many shards.
    """
    if not 0 <= shard < shards <= MAX_SHARDS:
        raise ValueError(f"shard {shard} is not one of {shards} shards (at most {MAX_SHARDS})")
    low = shard * REDIS_CLUSTER_HASH_SLOTS // shards
    high = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
    candidate, n = f"s{shard}", 0
    while not low <= key_slot(candidate.encode()) < high:
        candidate, n = f"s{shard}.{n}", n + 1
    return candidate


def timer_member(subject: str, timer_id: str) -> str:
    """The member naming one workflow's timer in a shard's timer index and claims."""
    return f"{subject}{TIMER_MEMBER_SEPARATOR}{timer_id}"


def replays(event_id: str) -> str:
    """How many times the dead-lettered event ``event_id`` has been replayed (short-lived)."""
    return f"{PREFIX}:replays:{event_id}"


def attempts(message_id: str) -> str:
    """Counter of delivery attempts of one message, so a poison message can be quarantined."""
    if not message_id:
        raise ValueError("A message id is required to build its attempt counter key")
    return f"{PREFIX}:attempts:{message_id}"


def queue_signal(queue: str) -> str:
    """The broker list that wakes idle consumers of ``queue`` (see tasks.worker.kombu_redis)."""
    return QUEUE_SIGNAL_PREFIX + queue


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The keys of a deployment whose state is split into ``shards`` shards (see the module doc).

    Args:
        shards: the deployment's shard count (``Settings.redis_shard_count``); every worker and
            client of one deployment must use the same.
    """

    shards: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"shards must be from 1 to {MAX_SHARDS}, got {self.shards}")

    # -- shards -----------------------------------------------------------------------------------

    def shard_of(self, subject: str) -> int:
        """The shard of a workflow (or of any id used to spread a sharded stream): stable crc32."""
        return zlib.crc32(subject.encode()) % self.shards

    def shard_prefix(self, shard: int) -> str:
        """``orch:{<t>}``: the start of every key of ``shard``."""
        return f"{PREFIX}:{{{shard_tag(shard, self.shards)}}}"

    @property
    def all_shards(self) -> range:
        """Every shard number."""
        return range(self.shards)

    # -- one workflow -----------------------------------------------------------------------------

    def _workflow(self, subject: str) -> str:
        if not subject:
            raise ValueError("A subject is required to build its Redis keys")
        return f"{self.shard_prefix(self.shard_of(subject))}:wf:{subject}"

    def record(self, subject: str) -> str:
        """Hash holding the record ``blob`` and its ``version``."""
        return f"{self._workflow(subject)}:record"

    def consumed(self, subject: str) -> str:
        """Set of the event ids already applied to ``subject`` (idempotent redelivery)."""
        return f"{self._workflow(subject)}:consumed"

    def outbox(self, subject: str) -> str:
        """Hash of unpublished step outboxes, field = the id of the event that produced them."""
        return f"{self._workflow(subject)}:outbox"

    def timers(self, subject: str) -> str:
        """Hash of ``subject``'s pending timers: timer id -> msgpack of the event that fires it."""
        return f"{self._workflow(subject)}:timers"

    def history(self, subject: str) -> str:
        """List of the workflow's history entries (msgpack), oldest first."""
        return f"{self._workflow(subject)}:history"

    def summary(self, subject: str) -> str:
        """Hash of the workflow's search index row."""
        return f"{self._workflow(subject)}:summary"

    def lock_name(self, subject: str) -> str:
        """Name given to ``redis_lock.Lock``; the library turns it into :meth:`lock_key`."""
        return self._workflow(subject)

    def lock_key(self, subject: str) -> str:
        """The Redis key python-redis-lock sets, whose value is the holder's token."""
        return LOCK_KEY_PREFIX + self.lock_name(subject)

    def lock_signal(self, subject: str) -> str:
        """The list python-redis-lock pushes to on release, to wake blocking waiters."""
        return LOCK_SIGNAL_PREFIX + self.lock_name(subject)

    def release_lock_keys(self, subject: str) -> list[str]:
        """KEYS of release_lock.lua, in its order (the lock, its signal, outbox, history, record)."""
        return [
            self.lock_key(subject),
            self.lock_signal(subject),
            self.outbox(subject),
            self.history(subject),
            self.record(subject),
        ]

    # -- one shard's cross-workflow structures ---------------------------------------------------

    def timer_index(self, shard: int) -> str:
        """The shard's timer index (zset of :func:`timer_member` by due time, epoch ms)."""
        return f"{self.shard_prefix(shard)}:timers"

    def timer_claims(self, shard: int) -> str:
        """The shard's timers claimed for firing and not yet published (zset by claim time)."""
        return f"{self.shard_prefix(shard)}:timers:claimed"

    def index_prefix(self, shard: int) -> str:
        """Prefix of the shard's index sorted sets."""
        return f"{self.shard_prefix(shard)}:index:"

    def index_all(self, shard: int) -> str:
        """The shard's workflows by updated ms."""
        return f"{self.index_prefix(shard)}all"

    def index_expiring(self, shard: int) -> str:
        """The shard's finished workflows by when their record expires (epoch ms)."""
        return f"{self.index_prefix(shard)}expiring"

    def index_status_prefix(self, shard: int) -> str:
        """Prefix of the shard's per-status sets (the status is appended)."""
        return f"{self.index_prefix(shard)}status:"

    def index_status(self, shard: int, status: str) -> str:
        """Sorted set of the shard's workflows with ``status``."""
        return self.index_status_prefix(shard) + status

    def index_statuses(self, shard: int) -> list[str]:
        """Every per-status set of the shard, in :data:`~orchestrator.inspection.STATUSES` order."""
        return [self.index_status(shard, status) for status in STATUSES]

    def index_orchestrator(self, shard: int, name: str, version: str | None = None) -> str:
        """Sorted set of the shard's workflows of orchestrator ``name`` (of one ``version`` when given)."""
        return f"{self.index_prefix(shard)}orch:{name}" + (f":{version}" if version is not None else "")

    def index_parent(self, shard: int, parent_subject: str) -> str:
        """Sorted set of the shard's child workflows of ``parent_subject``."""
        return f"{self.index_prefix(shard)}parent:{parent_subject}"

    def dead_letter_stream(self, shard: int) -> str:
        """The shard's dead-letter stream."""
        return f"{self.shard_prefix(shard)}:deadletter"

    def dead_letter_streams(self) -> list[str]:
        """Every shard's dead-letter stream, by shard."""
        return [self.dead_letter_stream(shard) for shard in self.all_shards]

    def outbox_stream(self, destination: str, subject: str) -> str:
        """The stream receiving the events about ``subject`` addressed to ``destination``."""
        return self.outbox_stream_of_shard(destination, self.shard_of(subject))

    def outbox_stream_of_shard(self, destination: str, shard: int) -> str:
        """Shard ``shard``'s stream of the events addressed to ``destination`` (an event's ``to``)."""
        if not destination:
            raise ValueError("A destination is required to build its outbox stream key")
        return f"{self.shard_prefix(shard)}:outbox:{destination}"

    def outbox_streams(self, destination: str) -> list[str]:
        """Every shard's stream of ``destination``, by shard."""
        return [self.outbox_stream_of_shard(destination, shard) for shard in self.all_shards]


#: The key space of a one-shard deployment (the default on a single Redis or a Sentinel
#: service): tools and tests that know they face such a deployment.
SINGLE = KeySpace()
