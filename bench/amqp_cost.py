"""What a confirmed publish to RabbitMQ costs, message by message against one batch.

``python -m bench distributed --broker amqp`` runs this before its rounds, on its fresh virtual
host: persistent messages to a durable queue (what a step publishes), through one connection
with publisher confirms, in rounds that alternate (interleaved, so the disk's and the machine's
drift hit both):

* ``single``: stock kombu py-amqp, each publish waits for its own ``basic.ack`` (what the raw
  baseline and, before :mod:`tasks.worker.kombu_amqp`, our steps did);
* ``batch``: :mod:`tasks.worker.kombu_amqp`, ten publishes then one wait for all their confirms
  (what a fan-out step now does).

RabbitMQ confirms a persistent message once it is written to disk, so the single figure is
about one disk sync per message, and the batch one about one per batch.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Producer
from kombu.transport import pyamqp

from bench import common
from tasks.worker import kombu_amqp

#: Messages per batch: a fan-out step's ten events.
BATCH = 10


def _connection(url: str, transport: type) -> Any:
    return Connection(url, transport=transport, transport_options={"confirm_publish": True}, connect_timeout=10)


def measure(url: str, batches: int = 20, rounds: int = 3) -> dict[str, Any]:
    """ms per confirmed message, one at a time and in batches of :data:`BATCH`, medians of rounds."""
    queue_name = f"bench.confirm.{uuid.uuid4().hex[:8]}"
    exchange = Exchange("", type="direct")
    per_message: dict[str, list[float]] = {"single": [], "batch": []}
    rates: dict[str, list[float]] = {"single": [], "batch": []}
    with _connection(url, pyamqp.Transport) as stock, _connection(url, kombu_amqp.Transport) as batching:
        queue = Queue(queue_name, exchange, durable=True, auto_delete=False)
        queue(stock.default_channel).declare()
        producers = {
            "single": Producer(stock.default_channel, exchange=exchange, routing_key=queue_name),
            "batch": Producer(batching.default_channel, exchange=exchange, routing_key=queue_name),
        }
        body = {"data": "x" * 500}
        for index in range(rounds):
            order = ["single", "batch"] if index % 2 == 0 else ["batch", "single"]
            for name in order:
                producer = producers[name]
                began = time.perf_counter()
                for _ in range(batches):
                    at = time.perf_counter()
                    if name == "batch":
                        with producer.batch():
                            for _ in range(BATCH):
                                producer.publish(body, delivery_mode=2)
                    else:
                        for _ in range(BATCH):
                            producer.publish(body, delivery_mode=2)
                    per_message[name].append((time.perf_counter() - at) * 1000 / BATCH)
                rates[name].append(batches * BATCH / (time.perf_counter() - began))
        queue(stock.default_channel).delete()
    found: dict[str, Any] = {
        name: {
            "ms_per_message_p50": round(common.percentile(values, 0.5), 3),
            "ms_per_message_p99": round(common.percentile(values, 0.99), 3),
            "messages_per_s": round(common.median(rates[name]), 1),
        }
        for name, values in per_message.items()
    }
    found["batch_size"] = BATCH
    found["messages_per_mode"] = batches * BATCH * rounds
    found["speed_up"] = round(found["batch"]["messages_per_s"] / found["single"]["messages_per_s"], 2)
    return found


def markdown(found: dict[str, Any]) -> str:
    """One line per mode."""
    return common.table(
        ["confirmed publish (persistent, durable queue)", "ms per message p50 / p99", "messages/s"],
        [
            ["one at a time (stock py-amqp)", f"{found['single']['ms_per_message_p50']:.2f} / "
             f"{found['single']['ms_per_message_p99']:.2f}", found["single"]["messages_per_s"]],
            [f"batches of {found['batch_size']} (tasks.worker.kombu_amqp)", f"{found['batch']['ms_per_message_p50']:.2f} / "
             f"{found['batch']['ms_per_message_p99']:.2f}", found["batch"]["messages_per_s"]],
        ],
    ) + f"\n\n{found['messages_per_mode']} messages each, interleaved; batches are {found['speed_up']:.1f}× faster.\n"
