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

* **Reserve atomically.** One Lua script (:data:`RESERVE_SCRIPT`) pops the first message of the
  consumer's queues (same priority and queue order as kombu's ``BRPOP``) and writes it into
  ``unacked``/``unacked_index`` in the same atomic call, in the exact format kombu's
  ``QoS.append`` writes. From the moment it leaves the queue it is covered by kombu's restore
  sweep, so a crash anywhere later means a redelivery after the visibility timeout, never a
  loss. An item that is not a JSON envelope with ``properties.delivery_tag`` is moved to the
  dead-letter stream (reason ``undecodable-envelope``, body hex-encoded) instead of being
  returned: the worker never sees it.
* **Wait on signals.** Lua cannot block, so when the script finds every queue empty the consumer
  waits with ``BRPOP`` on per-queue *signal* lists (``_orch.signal.<queue>``, see
  :func:`signal_key`), which every publish of this transport pushes to. Signals carry no data:
  popping one and dying loses nothing. The script clears the signals of the queues it found
  empty in the same atomic call, so a message pushed afterwards always leaves a fresh signal
  (no lost wake-up). The wait ends after ``brpop_timeout`` (1 s) at the latest, which also picks
  up messages pushed by other publishers (a plain kombu client) or restored by the sweep.

Publishing, acknowledging, the restore sweep and everything else are kombu's own code. The
transport is selected by :func:`config.celery_config.celery_config` for ``redis://`` and
``rediss://`` brokers; it does not support kombu's ``global_keyprefix``.
"""

from __future__ import annotations

from queue import Empty
from time import monotonic, time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

#: Most signals kept per queue: enough to wake every idle consumer, bounded whatever happens.
SIGNAL_CAP = 64

#: Prefix of the per-queue signal lists (not used by kombu, so no clash with its keys).
SIGNAL_PREFIX = "_orch.signal."

#: Bytes of an undecodable queue item kept in its dead letter.
DEAD_LETTER_BODY_KEPT = 4096

#: Pop the first message of KEYS[1..n] into the unacked hash/zset; dead-letter non-envelopes.
#:
#: KEYS[1..n]   queue keys, in the order kombu's BRPOP would try them
#: KEYS[n+1]    unacked hash (delivery tag -> JSON [message, exchange, routing key])
#: KEYS[n+2]    unacked_index zset (delivery tag -> time of reservation)
#: KEYS[n+3]    dead-letter stream
#: KEYS[n+4..]  signal lists of the queues, deleted when every queue is empty
#: ARGV[1]      n;  ARGV[2] now (seconds, float);  ARGV[3] dead-letter MAXLEN (~);  ARGV[4] bytes kept
#:
#: Returns {queue key, message}; "again" after refusing 100 items (call again); false when empty. The unacked value is built from the raw item text, so
#: kombu's restore re-publishes exactly the bytes that were queued.
RESERVE_SCRIPT = """
local n = tonumber(ARGV[1])
local unacked, index, letters = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3]
local function hex(s)
    return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
local refused = 0
for i = 1, n do
    while true do
        local item = redis.call('RPOP', KEYS[i])
        if not item then break end
        local ok, message = pcall(cjson.decode, item)
        local props = ok and type(message) == 'table' and message['properties']
        local tag = type(props) == 'table' and props['delivery_tag']
        if type(tag) == 'string' and tag ~= '' then
            local info = type(props['delivery_info']) == 'table' and props['delivery_info'] or {}
            redis.call('ZADD', index, ARGV[2], tag)
            redis.call('HSET', unacked, tag, '[' .. item .. ',' .. cjson.encode(info['exchange'] or '')
                .. ',' .. cjson.encode(info['routing_key'] or '') .. ']')
            return {KEYS[i], item}
        end
        local kept = string.sub(item, 1, tonumber(ARGV[4]))
        local payload = cmsgpack.pack({queue = KEYS[i], body_hex = hex(kept), body_length = #item})
        redis.call('XADD', letters, 'MAXLEN', '~', ARGV[3], '*', 'reason', 'undecodable-envelope',
            'error', 'queue item is not a kombu message envelope (JSON object with properties.delivery_tag)',
            'payload', payload, 'at', ARGV[2], 'task_id', '')
        refused = refused + 1
        if refused >= 100 then return 'again' end  -- bound the work of one call
    end
end
for i = n + 4, #KEYS do redis.call('DEL', KEYS[i]) end
return false
"""


def signal_key(queue: str) -> str:
    """The signal list of ``queue``: one entry per publish, popped by idle consumers."""
    return SIGNAL_PREFIX + queue


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel with atomic reservation (see the module docstring)."""

    #: Dead-letter stream and its cap, set from ``broker_transport_options``.
    dead_letter_stream = "orch:deadletter"
    dead_letter_maxlen = 100_000

    from_transport_options = kombu_redis.Channel.from_transport_options + (  # type: ignore[assignment]
        "dead_letter_stream",
        "dead_letter_maxlen",
    )

    #: True after a reservation found every queue empty: the next command waits on signals.
    _idle = False
    #: Which command is outstanding on the consuming connection: "EVAL" or "BRPOP".
    _pending = "EVAL"

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
        signals = [signal_key(queue) for queue in queues]
        if self._idle:
            self._pending = "BRPOP"
            wait = self.brpop_timeout if timeout is None else timeout
            self.client.connection.send_command("BRPOP", *signals, wait or 0)
            return
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._pending = "EVAL"
        self.client.connection.send_command(
            "EVAL",
            RESERVE_SCRIPT,
            len(keys) + 3 + len(signals),
            *keys,
            self.unacked_key,
            self.unacked_index_key,
            self.dead_letter_stream,
            *signals,
            len(keys),
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

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        batch = kwargs.get("_publish_batch")
        super()._put(queue, message, **kwargs)
        signal = signal_key(queue)
        if batch is not None:
            batch.add("lpush", signal, 1)
            batch.add("ltrim", signal, 0, SIGNAL_CAP - 1)
            return
        with self.conn_or_acquire() as client:
            client.pipeline(transaction=False).lpush(signal, 1).ltrim(signal, 0, SIGNAL_CAP - 1).execute()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
