"""Count what a redis-py client sends: each ``send_packed_command`` is one network round trip.

redis-py packs a whole pipeline into one ``send_packed_command``, so the number of calls is the
number of round trips a piece of code costs, whatever it pipelines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis


@contextmanager
def sent_packets(client: redis.Redis) -> Iterator[list[Any]]:
    """Record every packet ``client`` sends inside the block (connections taken from its pool then)."""
    sent: list[Any] = []
    original = client.connection_pool.get_connection

    def counting(*args: Any, **kwargs: Any) -> Any:
        connection = original(*args, **kwargs)
        send = connection.send_packed_command

        def spy(command: Any, check_health: bool = True) -> None:
            sent.append(command)
            send(command, check_health)

        connection.send_packed_command = spy
        return connection

    client.connection_pool.get_connection = counting  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        client.connection_pool.get_connection = original  # type: ignore[method-assign]
