"""kombu's py-amqp transport, with publisher confirms awaited once per batch instead of per message.

Why: with ``confirm_publish`` (the runtime's setting on RabbitMQ, see
:func:`tasks.worker.celery_config._amqp_transport_options`) py-amqp waits for RabbitMQ's
``basic.ack`` after every ``basic.publish``. RabbitMQ acknowledges a persistent message on a
durable queue once it is on disk, so each publish costs a disk sync as well as a round trip (a
median 2.2 ms here, with a tail in the hundreds of ms on a busy disk), and a step emitting ten
events paid for ten in a row while it held its workflow's lock. RabbitMQ confirms a run of
messages with one ``basic.ack`` (``multiple``) after one sync, so publishing all of a step's
events and then waiting once for all their confirms costs about one.

kombu ≥ 5.7 lets a transport own ``Producer.batch()`` (``create_publish_batch`` on the channel);
its py-amqp transport does not, so a batch there published and confirmed message by message.
:class:`ConfirmBatch` is that hook for py-amqp: ``publish`` sends, ``flush`` (at the end of the
batch) waits until RabbitMQ has confirmed every message of the batch. What is promised does
not change: :meth:`tasks.runtime.Runtime.publish` returns only after every event is confirmed,
and a negative confirm, a timeout or a lost connection raises
:class:`kombu.exceptions.OperationalError` (retryable: the step's outbox stays unsettled and its
redelivery publishes again) instead of being lost.

The channel tracks the delivery tag of every message it publishes in confirm mode (RabbitMQ
numbers them 1, 2, ... from ``confirm.select``) and which are still unconfirmed, so a message
published one at a time outside a batch waits for its own tag, not for whichever
acknowledgement arrives first.
"""

from __future__ import annotations

import time
from typing import Any

from amqp import spec
from amqp.exceptions import MessageNacked
from kombu.exceptions import OperationalError
from kombu.transport import pyamqp


class Channel(pyamqp.Channel):  # type: ignore[misc]
    """A py-amqp channel that knows which of its confirm-mode publishes RabbitMQ has confirmed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Whether ``confirm.select`` was sent on this channel.
        self._confirming = False
        #: Delivery tag of the last message published in confirm mode (0: none yet).
        self._last_tag = 0
        #: Tags published and not yet acknowledged or refused.
        self._unconfirmed: set[int] = set()
        #: Tags RabbitMQ refused (``basic.nack``) that no one has asked about yet.
        self._refused: set[int] = set()
        self.events["basic_ack"].add(self._on_confirm)
        self.events["basic_nack"].add(self._on_refuse)

    # -- bookkeeping of confirms --------------------------------------------------------------------

    def _settle(self, tag: int, multiple: bool) -> set[int]:
        settled = {each for each in self._unconfirmed if each <= tag} if multiple else {tag} & self._unconfirmed
        self._unconfirmed -= settled
        return settled

    def _on_confirm(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)

    def _on_refuse(self, delivery_tag: int, multiple: bool) -> None:
        self._refused |= self._settle(delivery_tag, multiple)

    def publish_unconfirmed(self, *args: Any, **kwargs: Any) -> int | None:
        """Publish without waiting; the message's delivery tag, or None without confirm mode."""
        kwargs.pop("confirm_timeout", None)
        if not self.connection.confirm_publish:
            self._basic_publish(*args, **kwargs)
            return None
        if not self._confirming:
            self._confirming = True
            self.confirm_select()
        self._basic_publish(*args, **kwargs)
        self._last_tag += 1
        self._unconfirmed.add(self._last_tag)
        return self._last_tag

    def await_confirms(self, tags: set[int], timeout: float | None = None) -> None:
        """Wait until RabbitMQ has confirmed every one of ``tags``.

        Raises:
            amqp.exceptions.MessageNacked: RabbitMQ refused one of them.
            socket.timeout: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while tags & self._unconfirmed:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            # Returns after the next ack or nack of this channel; the listeners above record it.
            self.wait([spec.Basic.Ack, spec.Basic.Nack], timeout=left)
        refused = tags & self._refused
        self._refused -= tags
        if refused:
            raise MessageNacked(f"RabbitMQ refused {len(refused)} of {len(tags)} message(s) (basic.nack)")

    def forget(self, tags: set[int]) -> None:
        """Stop tracking ``tags`` (a batch given up); their late confirms are then ignored."""
        self._unconfirmed -= tags
        self._refused -= tags

    def basic_publish_confirm(self, *args: Any, **kwargs: Any) -> None:
        """One message, confirmed before returning (py-amqp's behaviour), waiting for its own tag."""
        timeout = kwargs.get("confirm_timeout") or kwargs.get("timeout")
        tag = self.publish_unconfirmed(*args, **kwargs)
        if tag is not None:
            self.await_confirms({tag}, timeout)

    def create_publish_batch(self, max_size: int) -> ConfirmBatch:
        """kombu's hook for ``Producer.batch()``."""
        return ConfirmBatch(self, max_size)


class ConfirmBatch:
    """Messages of one ``Producer.batch()``: published at once, their confirms awaited at the flush.

    Args:
        channel: the producer's channel.
        max_size: most messages left unconfirmed; one more flushes first.
    """

    def __init__(self, channel: Channel, max_size: int) -> None:
        self.channel = channel
        self.max_size = max_size
        self._tags: set[int] = set()
        self._timeout: float | None = None

    def publish(self, message: Any, **kwargs: Any) -> None:
        """Send one message now; its confirm is awaited by :meth:`flush`.

        A connection error is raised as :class:`~kombu.exceptions.OperationalError`, which
        kombu's publish retry does not catch: retrying on a new connection would leave this
        batch's earlier messages unconfirmed on the old one, so the caller retries the whole.
        """
        if len(self._tags) >= self.max_size:
            self.flush()
        self._timeout = kwargs.get("confirm_timeout") or kwargs.get("timeout") or self._timeout
        try:
            tag = self.channel.publish_unconfirmed(message, **kwargs)
        except self.channel.connection.recoverable_connection_errors as error:
            raise OperationalError(f"publish failed: {error!r}; the batch is not confirmed") from error
        if tag is not None:
            self._tags.add(tag)

    def flush(self) -> None:
        """Wait until RabbitMQ has confirmed every message published since the last flush."""
        tags, self._tags = self._tags, set()
        if not tags:
            return
        try:
            self.channel.await_confirms(tags, self._timeout)
        except (MessageNacked, *self.channel.connection.recoverable_connection_errors, TimeoutError) as error:
            self.channel.forget(tags)
            raise OperationalError(f"{len(tags)} published message(s) not confirmed by RabbitMQ: {error!r}") from error

    def discard(self) -> None:
        """Give up the batch (an error in the ``with`` block): sent messages stay sent, unconfirmed."""
        self.channel.forget(self._tags)
        self._tags = set()

    def close(self) -> None:
        """Nothing is held between batches: the channel belongs to the producer."""
        self.discard()


class Connection(pyamqp.Connection):  # type: ignore[misc]
    """py-amqp connection opening :class:`Channel` channels."""

    Channel = Channel


class Transport(pyamqp.Transport):  # type: ignore[misc]
    """kombu's py-amqp transport with :class:`ConfirmBatch` behind ``Producer.batch()``."""

    Connection = Connection
    implements = pyamqp.Transport.implements.extend(batch_publish=True)



class SSLTransport(pyamqp.SSLTransport):  # type: ignore[misc]
    """The same over TLS (``amqps://``): kombu's ``pyamqp.SSLTransport`` with :class:`ConfirmBatch`."""

    Connection = Connection
    implements = pyamqp.SSLTransport.implements.extend(batch_publish=True)
