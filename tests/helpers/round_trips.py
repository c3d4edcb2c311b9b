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
    """Record every packet ``client`` sends inside the block.

    Each connection the pool hands out in the block is spied on once (a pool hands the same
    connection out again and again), and every spy is removed at the end.
    """
    sent: list[Any] = []
    spied: list[Any] = []
    pool = client.connection_pool
    original = pool.get_connection

    def counting(*args: Any, **kwargs: Any) -> Any:
        connection = original(*args, **kwargs)
        if "send_packed_command" not in vars(connection):
            send = connection.send_packed_command

            def spy(command: Any, check_health: bool = True) -> None:
                sent.append(command)
                send(command, check_health)

            connection.send_packed_command = spy
            spied.append(connection)
        return connection

    pool.get_connection = counting  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        del pool.get_connection  # back to the class's method
        for connection in spied:
            del connection.send_packed_command
