"""A kombu Redis transport whose consumers cannot lose a message, nor die of a malformed one.

kombu's Redis transport (5.7) consumes with ``BRPOP`` and only *afterwards* records the message
in its ``unacked`` hash and ``unacked_index`` zset (the ack emulation that makes
``task_acks_late`` and the visibility-timeout redelivery work). Between the two the message
exists only in the consumer's socket buffer or memory, and kombu keeps a popped reply *unread*
while the worker is at its prefetch limit (``MultiChannelPoller._pause_brpop``). A worker that
is SIGKILLed (OOM killer, lost node, ``kill -9`` of the process group) in that window took the
message out of Redis with no trace left: it is never redelivered. Measured by
``tests/e2e/faults/test_worker_crash.py`` before this module existed: 6 workflows lost out of
300 with 35 kills of two busy workers (upstream: celery/kombu#305, celery/celery#7950).
A queue item that is not a kombu envelope (``LPUSH queue garbage``) also made ``BRPOP``'s
``json.loads`` raise in the consumer and the worker exit, item after item.

This transport changes how a consumer takes a message out of a queue, and reuses one pool
client where kombu builds a new one per call:

* **Reserve atomically.** One Lua script (``tasks/store/scripts/reserve.lua``) pops the first message of the
  consumer's queues (same priority and queue order as kombu's ``BRPOP``) and writes it into
  ``unacked``/``unacked_index`` in the same atomic call, in the exact format kombu's
  ``QoS.append`` writes. From the moment it leaves the queue it is covered by kombu's restore
  sweep, so a crash anywhere later means a redelivery after the visibility timeout, never a
  loss. An item that is not a JSON envelope with ``properties.delivery_tag`` is moved to the
  dead-letter stream (reason ``undecodable-envelope``, body hex-encoded) instead of being
  returned: the worker never sees it.
* **Wait on signals.** Lua cannot block, so when the script finds every queue empty the consumer
  waits with ``BRPOP`` on per-queue *signal* lists (``_orch.signal.<queue>``, see
  :func:`tasks.store.keys.queue_signal`), which every publish of this transport pushes to. Signals carry no data:
  popping one and dying loses nothing. The script clears the signals of the queues it found
  empty in the same atomic call, so a message pushed afterwards always leaves a fresh signal
  (no lost wake-up). The wait ends after ``brpop_timeout`` (1 s) at the latest, which also picks
  up messages pushed by other publishers (a plain kombu client) or restored by the sweep.

* **Capture a batch instead of sending it** (:meth:`Channel.capturing`). Inside the block, a
  ``Producer.batch()`` on this channel collects the exact Redis commands its publishes would have
  pipelined (kombu's ``LPUSH`` of each envelope, the wake-up signals, a fanout ``PUBLISH`` of
  Celery's task-sent event) instead of sending them: the runtime's fused step
  (:mod:`tasks.store.memory`) runs them inside the step's write script, so an orchestrator
  step's state, its messages and its unlock are one atomic call. The messages are built by the
  whole unchanged publish path (Celery's ``as_task_v2`` and signals, the OpenTelemetry
  instrumentation, kombu's ``prepare_message``, ``basic_publish`` and ``_put``); only the last
  step, the pipeline's ``execute``, is left to the caller.

Publishing, acknowledging, the restore sweep and everything else are kombu's own code. The
transport is selected by :func:`tasks.worker.celery_config.celery_config` for ``redis://`` and
``rediss://`` brokers; it does not support kombu's ``global_keyprefix``.

This is the one module that relies on kombu's internals: the Redis channel's polling pair
(``_brpop_start``/``_brpop_read``, ``_in_poll``, ``_flush_brpop_reauth``, ``_queue_cycle``,
``_q_for_pri``, ``connection._deliver``), its publish hook (``_put`` with ``_publish_batch``),
its batch factory and the batch session interface the producer calls (``create_publish_batch``;
``channel``, ``publish``, ``add``, ``flush``, ``discard``, ``close``) and its client factory
(``_create_client``). ``tests/integration/test_third_party_contracts.py``
pins each of them and names the installed kombu version when one changes; pyproject.toml
bounds the version. Checked on kombu 5.7.0.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from functools import cache
from queue import Empty
from time import monotonic, time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis.exceptions import NoScriptError

from tasks.store import keys, scripts

#: Most signals kept per queue: enough to wake every idle consumer, bounded whatever happens.
SIGNAL_CAP = 64

#: Bytes of an undecodable queue item kept in its dead letter.
DEAD_LETTER_BODY_KEPT = 4096


@cache
def _reserve_sha() -> str:
    """SHA1 of the reservation script: the name Redis knows it by once loaded."""
    return hashlib.sha1(scripts.load("reserve").encode("utf-8")).hexdigest()


#: The Redis commands a capture keeps: ``[name, *arguments]``, each argument as bytes or text.
Command = list[bytes | str]


class CapturedBatch:
    """A publish batch session that keeps the Redis commands instead of pipelining them.

    kombu's ``PublishBatch`` routes each message through ``Channel.basic_publish`` with itself as
    ``_publish_batch``; every ``_put``/``_put_fanout`` then calls :meth:`add` with its final
    commands, which ``PublishBatch`` queues on a pipeline. This session has the same interface
    (what kombu's producer batch state calls) and appends them to ``commands``; nothing is sent.
    """

    def __init__(self, channel: Channel, commands: list[Command]) -> None:
        self.channel = channel
        self.commands = commands

    def publish(self, message: Any, **kwargs: Any) -> Any:
        """Route one prepared message as kombu's batch does; keep its commands."""
        return self.channel.basic_publish(message, _publish_batch=self, **kwargs)

    def add(self, name: str, *args: Any) -> None:
        """Keep one final Redis command of the message being routed."""
        self.commands.append([name, *(_argument(arg) for arg in args)])

    def flush(self) -> None:
        """Nothing to send: the commands belong to whoever captured them."""

    def discard(self) -> None:
        """Forget the commands of an aborted batch."""
        self.commands.clear()

    def close(self) -> None:
        """Nothing to release."""


def _argument(value: Any) -> bytes | str:
    """A command argument as redis-py would send it (numbers as their decimal text)."""
    if isinstance(value, bytes | str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"unexpected Redis argument in a captured publish: {value!r}")
    return repr(value)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel with atomic reservation (see the module docstring)."""

    #: Dead-letter stream and its cap, set from ``broker_transport_options``.
    dead_letter_stream = keys.KeySpace().dead_letter_stream(0)
    dead_letter_maxlen = 100_000

    from_transport_options = kombu_redis.Channel.from_transport_options + (  # type: ignore[assignment]
        "dead_letter_stream",
        "dead_letter_maxlen",
    )

    #: True after a reservation found every queue empty: the next command waits on signals.
    _idle = False
    #: Which command is outstanding on the consuming connection: "EVALSHA" or "BRPOP".
    _pending = "EVALSHA"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.global_keyprefix:
            raise ValueError("tasks.transport does not support kombu's global_keyprefix")

    #: The pool client handed out by ``conn_or_acquire`` (see :meth:`_create_client`).
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        """Reuse one pool client for publishes, acks and sweeps instead of one per call.

        kombu builds a new ``redis.Redis`` for each ``conn_or_acquire`` (every publish batch,
        ack and restore), and redis-py's constructor fills a table of ~170 response callbacks:
        measured as the largest single cost of a publish after the socket calls. Such a client
        pins no connection (each command takes one from the pool), so sharing it is safe. The
        consuming ``client`` (``asynchronous=True``, with its own pinned connection) is not
        shared; a new pool (after a fork or a reconnect) gets a new client.
        """
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        shared = self._shared_client
        if shared is None or shared.connection_pool is not pool:
            shared = self._shared_client = super()._create_client()
        return shared

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        signals = [keys.queue_signal(queue) for queue in queues]
        if self._idle:
            self._pending = "BRPOP"
            wait = self.brpop_timeout if timeout is None else timeout
            self.client.connection.send_command("BRPOP", *signals, wait or 0)
            return
        queue_keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._pending = "EVALSHA"
        self.client.connection.send_command(
            "EVALSHA",
            _reserve_sha(),
            len(queue_keys) + 3 + len(signals),
            *queue_keys,
            self.unacked_key,
            self.unacked_index_key,
            self.dead_letter_stream,
            *signals,
            len(queue_keys),
            repr(time()),
            self.dead_letter_maxlen,
            DEAD_LETTER_BODY_KEPT,
        )

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                reply = self.client.parse_response(self.client.connection, self._pending, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except NoScriptError:  # first use on this server, or it restarted: load, look again
                self.client.script_load(scripts.load("reserve"))
                raise Empty() from None
            if self._pending == "BRPOP":  # woken by a signal, or the wait timed out: look again
                self._idle = False
                raise Empty()
            if not reply or not isinstance(reply, list):  # empty (idle), or "again" after refusals
                self._idle = not reply
                raise Empty()
            dest, item = reply
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self.connection._deliver(loads(bytes_to_str(item)), dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    #: Where a ``Producer.batch()`` on this channel puts its commands (see :meth:`capturing`).
    _capture: list[Command] | None = None

    @contextlib.contextmanager
    def capturing(self) -> Iterator[list[Command]]:
        """Within the block, a producer batch on this channel collects its Redis commands.

        Yields the list they are appended to, in the order the batch would have sent them. The
        channel belongs to one producer taken from the pool, so one thread at a time uses it.
        """
        if self._capture is not None:
            raise RuntimeError("this channel is already capturing")
        commands: list[Command] = []
        self._capture = commands
        try:
            yield commands
        finally:
            self._capture = None

    def create_publish_batch(self, max_size: int) -> Any:
        """kombu's batch session, or a :class:`CapturedBatch` inside :meth:`capturing`."""
        if self._capture is not None:
            return CapturedBatch(self, self._capture)
        return super().create_publish_batch(max_size)

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        batch = kwargs.get("_publish_batch")
        super()._put(queue, message, **kwargs)
        signal = keys.queue_signal(queue)
        if batch is not None:
            batch.add("lpush", signal, 1)
            batch.add("ltrim", signal, 0, SIGNAL_CAP - 1)
            return
        with self.conn_or_acquire() as client:
            client.pipeline(transaction=False).lpush(signal, 1).ltrim(signal, 0, SIGNAL_CAP - 1).execute()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
