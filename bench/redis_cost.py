"""Redis cost of an orchestrator step: round trips, commands and bytes, and the stored record.

``python -m bench redis-cost`` starts a private ``redis-server`` and runs the example workflows
in process (LocalBroker, no Celery, so no broker traffic at all) with the orchestrators on
:class:`tasks.redis_memory.RedisMachineMemory`, built from ``Settings`` defaults by
:meth:`~tasks.redis_memory.RedisMachineMemory.from_settings` over the runtime's own client
(:func:`tasks.connections.redis_client`).

Round trips are counted on the client side: every call of redis-py's
``AbstractConnection.send_packed_command`` is one request written to the socket and waited for
(a single command, a whole pipeline, an ``EVALSHA``, or a health-check ``PING``). The method is
patched in this process only, for the timed runs only. Each memory call (lock, read, write,
unlock, settle, and ``lock_and_read``, which the orchestrator uses instead of lock then
read) is also wrapped to attribute round trips and time to it.

Server side, ``CONFIG RESETSTAT`` before and ``INFO`` after each run give the commands executed
(``INFO commandstats``, which also counts the commands run inside Lua scripts) and the bytes in
and out (``total_net_input_bytes`` / ``total_net_output_bytes``). All figures are divided by the
number of orchestrator steps, counted by the same timing wrapper as the in-process part.

The record size is ``HSTRLEN`` of the ``blob`` field of a finished workflow's record hash (see
:mod:`tasks.keys`), with ``MEMORY USAGE`` of each of its keys.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from redis.connection import AbstractConnection

from bench import common
from bench.inprocess import WORKFLOWS, run_workflows, timed_broker
from tasks.store.connections import StateRedis, url_client

WARMUP = 20
TARGET_ROUND_TRIPS = 4.0
MEMORY_OPS = ("lock_and_read", "lock", "read", "write", "unlock", "settle")
NO_RENEWAL = "increment, lock_auto_renewal=false"


class RoundTrips:
    """Counts requests sent by every redis-py connection of this process while installed."""

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[RoundTrips]:
        """Patch ``send_packed_command`` for the duration of the block."""
        original: Any = AbstractConnection.send_packed_command

        def counting(connection: Any, command: Any, check_health: bool = True) -> Any:
            self.count += 1
            return original(connection, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        try:
            yield self
        finally:
            AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


class CountingMemory:
    """Delegates to a machine memory, attributing round trips and time to each operation."""

    def __init__(self, inner: Any, trips: RoundTrips) -> None:
        self._inner = inner
        self._trips = trips
        self.calls: Counter[str] = Counter()
        self.round_trips: Counter[str] = Counter()
        self.ns: Counter[str] = Counter()

    def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        before, start = self._trips.count, time.perf_counter_ns()
        try:
            return getattr(self._inner, op)(*args, **kwargs)
        finally:
            self.ns[op] += time.perf_counter_ns() - start
            self.round_trips[op] += self._trips.count - before
            self.calls[op] += 1

    def lock(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`MachineMemory.lock`."""
        return self._call("lock", *args, **kwargs)

    def unlock(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`MachineMemory.unlock`."""
        return self._call("unlock", *args, **kwargs)

    def read(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`MachineMemory.read`."""
        return self._call("read", *args, **kwargs)

    def lock_and_read(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`LockAndReadMemory.lock_and_read`."""
        return self._call("lock_and_read", *args, **kwargs)

    def write(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`MachineMemory.write`."""
        return self._call("write", *args, **kwargs)

    def settle(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`MachineMemory.settle`."""
        return self._call("settle", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Anything else the orchestrator may call is passed through, uncounted.
        return getattr(self._inner, name)

    def reset(self) -> None:
        """Forget the warm-up."""
        self.calls.clear()
        self.round_trips.clear()
        self.ns.clear()


def _server_stats(admin: StateRedis) -> dict[str, Any]:
    stats = admin.info("stats")
    commands = admin.info("commandstats")
    return {
        "net_input_bytes": int(stats["total_net_input_bytes"]),
        "net_output_bytes": int(stats["total_net_output_bytes"]),
        "commands": {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in commands.items()},
    }


def _record_size(admin: StateRedis, subject: str) -> dict[str, Any]:
    from tasks.store import keys

    sizes: dict[str, Any] = {"blob_bytes": int(admin.hstrlen(keys.SINGLE.record(subject), "blob"))}
    for name, key in (("record", keys.SINGLE.record(subject)), ("consumed", keys.SINGLE.consumed(subject)),
                      ("outbox", keys.SINGLE.outbox(subject))):
        sizes[f"{name}_memory_usage_bytes"] = int(admin.memory_usage(key) or 0)
    sizes["consumed_ids"] = int(admin.scard(keys.SINGLE.consumed(subject)))
    return sizes


def measure(
    kind: str, workflows: int, redis_url: str, wrap: Callable[[Any], Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Run ``workflows`` of ``kind`` over a fresh RedisMachineMemory and count what they cost.

    ``wrap`` wraps the memory (e.g. to drop what it is asked to store); ``overrides`` are
    :class:`~config.settings.Settings` fields (e.g. ``lock_auto_renewal``).
    """
    from config.settings import Settings

    settings = Settings(broker_url=redis_url, redis_url=redis_url, **overrides)
    with warmed_broker(settings, kind, wrap) as (memory, broker, wrapped, trips), \
            contextlib.closing(url_client(redis_url)) as admin:
        admin.config_resetstat()
        with trips.installed():
            seconds = run_workflows(broker, WORKFLOWS[kind], workflows - 1)
            last = broker.run(_init(kind))
        stats = _server_stats(admin)
        if last is None or last.data != WORKFLOWS[kind].expected:
            raise RuntimeError(f"the last {kind} workflow did not complete as expected: {last}")
        step_ns = [ns for h in wrapped if h.is_orchestrator for ns in h.samples_ns]
        steps = len(step_ns)
        commands = {name: calls for name, calls in stats["commands"].items() if name not in ("info", "config|resetstat")}
        return {
            "settings": {"lock_auto_renewal": settings.lock_auto_renewal, "lock_expire_s": settings.lock_expire_s},
            "workflows": workflows,
            "orchestrator_steps": steps,
            "round_trips_per_step": round(trips.count / steps, 2),
            "round_trips_per_step_by_op": {op: round(memory.round_trips[op] / steps, 2) for op in MEMORY_OPS},
            "us_per_step_by_op": {op: round(memory.ns[op] / steps / 1000, 1) for op in MEMORY_OPS},
            "us_per_orchestrator_step": round(common.mean(step_ns) / 1000, 1),
            "workflows_per_s": round((workflows - 1) / seconds, 1),
            "server_commands_per_step": round(sum(commands.values()) / steps, 2),
            "server_commands_by_name_per_step": {name: round(calls / steps, 2) for name, calls in sorted(commands.items())},
            "bytes_in_per_step": round(stats["net_input_bytes"] / steps),
            "bytes_out_per_step": round(stats["net_output_bytes"] / steps),
            "record": _record_size(admin, last.subject),
            "pass": trips.count / steps <= TARGET_ROUND_TRIPS,
        }


@contextlib.contextmanager
def warmed_broker(
    settings: Any, kind: str, wrap: Callable[[Any], Any] | None = None
) -> Iterator[tuple[CountingMemory, Any, list[Any], RoundTrips]]:
    """The examples on a LocalBroker over a counted RedisMachineMemory, warmed up with ``kind``.

    The memory is built by ``from_settings`` over the runtime's own client (closed after the
    block), wrapped by ``wrap`` when given; the warm-up's calls and samples are forgotten, and
    ``trips`` counts only while installed.
    """
    from tasks.store.connections import redis_client
    from tasks.store.memory import RedisMachineMemory

    client = redis_client(settings)
    trips = RoundTrips()
    inner = RedisMachineMemory.from_settings(settings, client)
    memory = CountingMemory(wrap(inner) if wrap is not None else inner, trips)
    broker, wrapped = timed_broker(memory)
    try:
        run_workflows(broker, WORKFLOWS[kind], WARMUP)
        memory.reset()
        for handler in wrapped:
            handler.samples_ns.clear()
        yield memory, broker, wrapped, trips
    finally:
        client.close()


def _init(kind: str) -> Any:
    from bench.inprocess import CLIENT
    from cli.demo import init_event

    workflow = WORKFLOWS[kind]
    return init_event(workflow.orchestrator, workflow.dataschema, workflow.data, source=CLIENT)


def run(increment: int, fanout: int) -> dict[str, Any]:
    """Both workflows on one private Redis; return the JSON document of this part."""
    from bench import procs, step_cost

    facts = common.machine()
    results: dict[str, Any] = {"target": f"round trips per orchestrator step <= {TARGET_ROUND_TRIPS:g}"}
    with tempfile.TemporaryDirectory(prefix="bench-redis-cost-") as tmp:
        with procs.redis_server(Path(tmp) / "redis") as redis_url:
            for kind, count in (("increment", increment), ("fanout", fanout)):
                results[kind] = measure(kind, count, redis_url)
                print(f"  redis-cost {kind}: {results[kind]['round_trips_per_step']} round trips per step", flush=True)
            # The same with lease renewal off: what renewing held leases costs per step.
            results[NO_RENEWAL] = measure("increment", increment, redis_url, lock_auto_renewal=False)
        results["runtime_steps"] = step_cost.run(increment, fanout, Path(tmp))
    results["load_average"] = common.load_average()
    results["machine"] = facts
    return results


def markdown(data: dict[str, Any]) -> str:
    """The Redis cost tables: per step totals, then the split by memory operation."""
    kinds = ("increment", "fanout", NO_RENEWAL)
    rows = [[
        kind, data[kind]["workflows"], data[kind]["orchestrator_steps"], data[kind]["round_trips_per_step"],
        data[kind]["server_commands_per_step"], data[kind]["bytes_in_per_step"], data[kind]["bytes_out_per_step"],
        data[kind]["us_per_orchestrator_step"], data[kind]["record"]["blob_bytes"],
        data[kind]["record"]["record_memory_usage_bytes"] + data[kind]["record"]["consumed_memory_usage_bytes"]
        + data[kind]["record"]["outbox_memory_usage_bytes"],
        data[kind]["pass"],
    ] for kind in kinds]
    head = "### Redis cost per orchestrator step (in process, RedisMachineMemory, no Celery)\n\n"
    body = common.table(
        ["workflow", "workflows", "steps", "round trips/step", "server commands/step", "bytes in/step",
         "bytes out/step", "µs/step", "record blob bytes", "MEMORY USAGE of its keys", f"≤ {TARGET_ROUND_TRIPS:g} round trips"],
        rows,
    )
    split = common.table(
        ["workflow", *[f"{op} (round trips / µs)" for op in MEMORY_OPS]],
        [[kind, *[f"{data[kind]['round_trips_per_step_by_op'][op]:.2f} / {data[kind]['us_per_step_by_op'][op]:.0f}"
                  for op in MEMORY_OPS]] for kind in kinds],
    )
    commands = ", ".join(f"{name} {value:g}" for name, value in data["increment"]["server_commands_by_name_per_step"].items())
    notes = (f"Round trips counted client-side (`send_packed_command` calls: one per command, pipeline or EVALSHA). "
             f"Server commands per increment step (commandstats, Lua-internal calls included): {commands}.")
    renewal = ("The first two rows use the Settings defaults (lease renewal on, as deployed: one keeper thread "
               "per process); the last row turns `lock_auto_renewal` off to show what renewal costs per step.")
    from bench import step_cost

    runtime = step_cost.markdown(data["runtime_steps"])
    runtime_notes = (
        "The worker's runtime (`Runtime.handle`, the `tasks.execute` body) run in this process over a Celery app "
        "whose broker is the state Redis, popping each published message from its queue: every redis-py request of "
        "a step, state and publication alike. `fused` is the default on one Redis (write, publish and unlock in one "
        "script); `plain` is `ORCH_FUSED_STEP=false` (write, publish batch, unlock)."
    )
    return (f"{head}{body}\n\n{split}\n\n{notes} {renewal}\n\n{runtime}\n\n{runtime_notes}\n\n"
            f"{common.machine_line(data['machine'])}\n")


def main(increment: int, fanout: int, json_path: Path | None) -> dict[str, Any]:
    """Run the part, write its JSON and markdown, print the table."""
    return common.report("redis-cost", run(increment, fanout), markdown, json_path)
