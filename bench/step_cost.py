"""What a distributed step costs in Redis round trips, publication included, fused and plain.

Part of ``python -m bench redis-cost``. The runtime of a worker (:class:`tasks.runtime.Runtime`
over a Celery app whose broker and state are the private Redis) executes whole workflows without
a Celery worker around it: this process pops each message its steps publish from its queue list,
decodes kombu's envelope and Celery's body, and hands the event to ``Runtime.handle``, as the
``tasks.execute`` task body would. Round trips are every redis-py request made during
``handle`` (state and broker alike), the same count as the distributed benchmark's probe, but
without the noise of worker processes. Two deployments are measured on the same server:

* ``fused``: the default when the broker is the state Redis; a step's write publishes its events
  and releases its lock in one script (:mod:`tasks.store.memory`);
* ``plain``: ``fused_step=False``: write, publish (one pipelined batch), unlock.

The consumer's own requests (the reservation and the acknowledgement, identical for both) are
not part of a task body and are not counted here.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import msgpack

from bench import common

#: Workflows run before counting (queues declared, scripts loaded).
WARMUP = 5


def _events(runtime: Any, client: Any) -> Any:
    """Yield each event waiting in a queue of the deployment until every queue is empty."""
    queues = sorted({runtime.settings.queue_for(name) for name in runtime.destinations})
    while True:
        found = False
        for queue in queues:
            item = client.rpop(queue)
            if item is None:
                continue
            found = True
            envelope = json.loads(item)
            body = msgpack.unpackb(base64.b64decode(envelope["body"]), raw=False)
            yield body[0][0], envelope["headers"]["id"]
        if not found:
            return


def measure(kind: str, workflows: int, redis_url: str, *, fused: bool, trips: Any) -> dict[str, Any]:
    """Run ``workflows`` of ``kind`` through one runtime; round trips and µs per step by kind of step."""
    from bench.inprocess import CLIENT
    from bench.redis_cost import _init
    from config.settings import Settings
    from orchestrator.orchestrator import ArvoOrchestrator
    from tasks.client import send_event
    from tasks.runtime import Runtime
    from tasks.store import keys
    from tasks.store.connections import url_client
    from tasks.worker.app import build_app

    settings = Settings(broker_url=redis_url, redis_url=redis_url, fused_step=fused)
    app, task = build_app(settings)
    runtime = Runtime(task, settings)
    client = url_client(redis_url)
    (stream,) = keys.KeySpace(settings.redis_shard_count).outbox_streams(CLIENT)  # one shard on one Redis
    trips_by: dict[str, int] = {"orchestrator": 0, "service": 0}
    ns_by: dict[str, int] = {"orchestrator": 0, "service": 0}
    steps: dict[str, int] = {"orchestrator": 0, "service": 0}
    try:
        already = int(client.xlen(stream))
        for index in range(WARMUP + workflows):
            counting = index >= WARMUP
            send_event(_init(kind), app)
            for event, task_id in _events(runtime, client):
                role = "orchestrator" if isinstance(runtime.handlers.get(event["to"]), ArvoOrchestrator) else "service"
                before, start = trips.count, time.perf_counter_ns()
                with trips.installed():
                    outcome = runtime.handle(event, attempt=0, task_id=task_id)
                if outcome.status not in ("applied", "handled"):
                    raise RuntimeError(f"a {kind} step ended {outcome.status}")
                if counting:
                    ns_by[role] += time.perf_counter_ns() - start
                    trips_by[role] += trips.count - before
                    steps[role] += 1
        done = int(client.xlen(stream)) - already
        if done != WARMUP + workflows:
            raise RuntimeError(f"{done} of {WARMUP + workflows} {kind} workflows completed")
    finally:
        client.close()
        runtime.redis.close()
    return {
        "workflows": workflows,
        **{f"{role}_steps": steps[role] for role in steps},
        **{f"round_trips_per_{role}_step": round(trips_by[role] / steps[role], 2) for role in steps},
        **{f"us_per_{role}_step": round(ns_by[role] / steps[role] / 1000, 1) for role in steps},
    }


def run(increment: int, fanout: int, scratch: Any) -> dict[str, Any]:
    """Both workflows, fused then plain, each deployment on its own fresh server."""
    from bench import procs
    from bench.redis_cost import RoundTrips

    found: dict[str, Any] = {}
    for kind, count in (("increment", increment), ("fanout", fanout)):
        for mode in ("fused", "plain"):
            with procs.redis_server(scratch / f"step-{kind}-{mode}") as redis_url:
                found[f"{kind}, {mode}"] = measure(kind, count, redis_url, fused=mode == "fused", trips=RoundTrips())
            print(f"  redis-cost {kind} {mode}: {found[f'{kind}, {mode}']['round_trips_per_orchestrator_step']} "
                  "round trips per orchestrator step, publication included", flush=True)
    return found


def markdown(found: dict[str, Any]) -> str:
    """The table of the runtime's step cost, fused and plain."""
    rows = [[name, got["workflows"], got["orchestrator_steps"], got["round_trips_per_orchestrator_step"],
             got["us_per_orchestrator_step"], got["service_steps"], got["round_trips_per_service_step"],
             got["us_per_service_step"]] for name, got in found.items()]
    head = ("### Round trips per distributed step, publication included (the worker's runtime in process, "
            "broker = state Redis)\n\n")
    return head + common.table(
        ["workflow, step", "workflows", "orchestrator steps", "round trips/orchestrator step", "µs/orchestrator step",
         "service steps", "round trips/service step", "µs/service step"],
        rows,
    )
