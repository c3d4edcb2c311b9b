"""Distributed benchmark: our workflows through Celery + Redis, against raw Celery chains.

``python -m bench distributed`` starts a private ``redis-server`` (free port, no persistence),
then for each worker layout, first for the raw baseline (:mod:`bench.raw_celery`) and then for
our runtime (:mod:`bench.worker_app`, i.e. ``tasks.app``):

1. two ``celery worker`` processes, ``-P solo -c 1`` by default (``--pool prefork`` runs
   ``-P prefork -c 1``, one pool child each), ``--without-gossip --without-mingle``, WARNING logs;
2. a warm-up (10 increment and 4 fan-out workflows), then 20 increment workflows one at a time
   (hop latency without load), then W increment and W' fan-out workflows with ``--inflight``
   (20) in flight, completions read from a stream (see :mod:`bench.driver`).

Layouts: ``split`` = one worker serves the orchestrator queues, the other the service queues
(the README's deployment); ``shared`` = both workers serve every queue. The raw chain uses the
same layout over its own two queues. Both are measured by default; the table marks the faster
one for our system.

What is reported, per system, layout and workflow:

* workflows/s and executions/s (first publish to last completion) and the ratio ours / raw;
* executions per workflow, counted by the probe (so the raw chain is checked to have the same
  number of hops as ours, retries included);
* hop latency p50/p99 = publish of a task (``before_task_publish``) to the start of its execution
  (``task_prerun``), over first attempts, under load and unloaded; it is measured directly in the
  worker processes by :mod:`bench.probe`, not derived from end-to-end times;
* mean execution time per queue group (``task_prerun`` to ``task_postrun``) and retries;
* end-to-end workflow latency p50/p99 as seen by the publisher, and worker RSS at the end.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench import common, probe
from bench.driver import DriveResult, drive, latency_ms
from tasks.store import keys
from tasks.store.connections import StateRedis, key_space_for, url_client

ORCH_QUEUES = ("arvo.orc.inc", "arvo.orc.fanout")
SERVICE_QUEUES = ("com.value.read", "com.number.increment", "com.number.double")
CLIENT = "com.bench.client"
WARMUP = {"increment": 10, "fanout": 4}
UNLOADED = 20
TARGET_RATIO = 0.7


@dataclass
class System:
    """How to run one system under test: its worker app, queues, publisher and completion stream."""

    name: str
    app_module: str
    orch_queues: tuple[str, ...]
    service_queues: tuple[str, ...]
    stream: str | list[str]
    start: Callable[[str, int], str]
    is_failure: Callable[[dict[bytes, bytes]], bool]

    def queue_sets(self, layout: str) -> list[tuple[str, ...]]:
        """The ``-Q`` list of each worker: two workers, or one serving every queue (``single``)."""
        if layout == "split":
            return [self.orch_queues, self.service_queues]
        every = self.orch_queues + self.service_queues
        return [every] if layout == "single" else [every, every]


#: How each broker is named in the table's title.
BROKER_TITLES = {"redis": "Celery + Redis", "amqp": "Celery + RabbitMQ broker, Redis state",
                 "cluster": "Celery + Redis broker, Redis Cluster state (3 primaries)"}


def procs_default_amqp() -> str:
    """The RabbitMQ the bench uses unless ``--amqp-url`` names another."""
    from bench.procs import DEFAULT_AMQP_URL

    return DEFAULT_AMQP_URL


def systems(redis_url: str, broker_url: str) -> dict[str, System]:
    """The raw baseline (published by a stock app) and our runtime (published by ``create_app``)."""
    from bench import raw_celery
    from bench.inprocess import WORKFLOWS
    from cli.demo import init_event
    from config.settings import Settings
    from tasks.client import send_event
    from tasks.worker.app import create_app

    settings = Settings(broker_url=broker_url, redis_url=redis_url)
    space = keys.KeySpace(settings.redis_shard_count)
    app = create_app(settings)
    raw_app = raw_celery.make_app(settings)

    def start_ours(shape: str, _index: int) -> str:
        workflow = WORKFLOWS[shape]
        event = init_event(workflow.orchestrator, workflow.dataschema, workflow.data, source=CLIENT)
        send_event(event, app)
        return event.subject

    def start_raw(shape: str, _index: int) -> str:
        workflow_id = f"raw-{uuid.uuid4().hex}"
        raw_celery.start(raw_app, workflow_id, shape)
        return workflow_id

    return {
        "raw": System(
            "raw", "bench.raw_celery", (raw_celery.QUEUES["orch"],), (raw_celery.QUEUES["svc"],),
            raw_celery.DONE_STREAM, start_raw, lambda _fields: False,
        ),
        "ours": System(
            "ours", "bench.worker_app", ORCH_QUEUES, SERVICE_QUEUES, space.outbox_streams(CLIENT),
            start_ours, lambda fields: fields.get(b"type", b"").startswith(b"sys."),
        ),
    }


def window(samples: list[probe.Sample], retries: list[float], runs: list[DriveResult],
           orch_queues: tuple[str, ...]) -> dict[str, Any]:
    """The probe's view of some runs: executions, hop latency, execution time, retries."""
    spans = [(run.started_at, run.ended_at) for run in runs]

    def within(at: float) -> bool:
        return any(begin <= at <= end for begin, end in spans)

    inside = [s for s in samples if within(s.start)]
    first = [s.hop_s for s in inside if s.retries == 0]
    orch = [s.run_s for s in inside if s.queue in orch_queues]
    service = [s.run_s for s in inside if s.queue not in orch_queues]
    workflows = sum(run.workflows for run in runs)
    seconds = sum(run.seconds for run in runs)
    return {
        "executions_per_workflow": round(len(inside) / workflows, 2),
        "executions_per_s": round(len(inside) / seconds, 1),
        "hop_ms_p50": round(common.percentile(first, 0.5) * 1000, 2),
        "hop_ms_p99": round(common.percentile(first, 0.99) * 1000, 2),
        "us_per_orchestrator_execution": round(common.mean(orch) * 1e6, 1),
        "us_per_service_execution": round(common.mean(service) * 1e6, 1),
        "retries": sum(1 for at in retries if within(at)),
        "round_trips_per_orchestrator_execution": round(
            common.mean([s.round_trips for s in inside if s.queue in orch_queues]), 2),
        "round_trips_per_service_execution": round(
            common.mean([s.round_trips for s in inside if s.queue not in orch_queues]), 2),
    }


def _drive(system: System, client: StateRedis, shape: str, count: int, inflight: int) -> DriveResult:
    return drive(client, system.stream, lambda i: system.start(shape, i), count, inflight, is_failure=system.is_failure)


def measure_layout(layout: str, pool: str, redis_url: str, counts: dict[str, int], inflight: int, rounds: int,
                   scratch: Path, broker_url: str | None = None) -> dict[str, Any]:
    """Both systems' workers of one layout up at once, rounds interleaved (see :func:`measure_layouts`)."""
    return measure_layouts([layout], pool, redis_url, counts, inflight, rounds, scratch, broker_url)[layout]


def measure_layouts(layouts: list[str], pool: str, redis_url: str, counts: dict[str, int], inflight: int,
                    rounds: int, scratch: Path, broker_url: str | None = None) -> dict[str, dict[str, Any]]:
    """Both systems' workers of a layout up at once (idle ones only wait), rounds interleaved.

    Why interleaved: the machine is shared and its load drifts; alternating the systems (and the
    layouts, e.g. one worker process against two, see :func:`_turns`) within each round, in
    reverse order in even rounds, makes drift hit all of them alike.

    During each measured run the CPU time of that run's workers, of this process (the driver),
    of the private Redis and, with a RabbitMQ broker, of the RabbitMQ node is read from ``/proc``
    (:mod:`bench.cpu`), with the Redis ``INFO commandstats`` and ``INFO cpu`` counters.
    """
    from bench import cpu, procs

    broker_url = broker_url or redis_url
    amqp = broker_url != redis_url
    found_systems = systems(redis_url, broker_url)
    client = url_client(redis_url)
    runs: dict[tuple[str, str, str], list[DriveResult]] = {
        (layout, name, shape): [] for layout in layouts for name in found_systems for shape in counts
    }
    usage: dict[tuple[str, str, str], list[dict[str, float]]] = {key: [] for key in runs}
    unloaded: dict[tuple[str, str], DriveResult] = {}
    rss: dict[tuple[str, str], list[dict[str, float]]] = {}
    # On a cluster (--state cluster) the state is several servers: their CPU is not metered.
    servers = {"redis": [int(client.info("server")["process_id"])]} if isinstance(client, redis.Redis) else {}
    if amqp:
        servers["rabbitmq"] = [cpu.rabbitmq_pid()]
    dead_before = _dead_letters(client)
    background = _background(servers) if amqp else {}
    try:
        for layout, indices in _turns(layouts, rounds):
            with contextlib.ExitStack() as stack:
                started = {
                    name: stack.enter_context(procs.workers(
                        system.app_module, system.queue_sets(layout), pool=pool, redis_url=redis_url,
                        probe_dir=scratch / f"{layout}-{name}", settings={"broker_url": broker_url},
                    ))
                    for name, system in found_systems.items()
                }
                for name, system in found_systems.items():
                    for shape, count in WARMUP.items():
                        _drive(system, client, shape, count, inflight)
                    if (layout, name) not in unloaded:
                        unloaded[layout, name] = _drive(system, client, "increment", UNLOADED, 1)
                for index in indices:
                    order = list(found_systems) if index % 2 == 0 else list(reversed(found_systems))
                    for name in order:
                        groups = {"workers": [w.process.pid for w in started[name]], "driver": [os.getpid()], **servers}
                        for shape, count in counts.items():
                            meter = cpu.Meter(groups, with_children=frozenset({"workers"}))
                            before = _redis_counters(client) if isinstance(client, redis.Redis) else {}
                            meter.start()
                            result = _drive(found_systems[name], client, shape, count, inflight)
                            wall, used = meter.stop()
                            after = _redis_counters(client) if isinstance(client, redis.Redis) else {}
                            runs[layout, name, shape].append(result)
                            usage[layout, name, shape].append(
                                {"wall_s": wall, **used, **{key: after[key] - before[key] for key in after}})
                            print(f"  distributed {layout} round {index + 1}/{rounds} {name} {shape}: "
                                  f"{result.workflows_per_s:.1f} workflows/s", flush=True)
                rss.update({(layout, name): [worker.rss_mb() for worker in group] for name, group in started.items()})
        dead_letters = _dead_letters(client) - dead_before
    finally:
        client.close()
    measured: dict[str, dict[str, Any]] = {}
    for layout in layouts:
        found: dict[str, Any] = {}
        for name, system in found_systems.items():
            samples, retries = probe.load(scratch / f"{layout}-{name}")
            entry: dict[str, Any] = {"worker_rss": rss[layout, name]}
            for shape in counts:
                measured_runs = runs[layout, name, shape]
                rates = [run.workflows_per_s for run in measured_runs]
                latencies = [latency for run in measured_runs for latency in run.latencies_s]
                seen = window(samples, retries, measured_runs, system.orch_queues)
                entry[shape] = {
                    "workflows_per_s": round(common.median(rates), 1),
                    "workflows_per_s_rounds": [round(rate, 1) for rate in rates],
                    "failures": sum(run.failures for run in measured_runs),
                    "workflow_latency_ms": latency_ms(latencies),
                    **seen,
                    "cpu": cpu_figures(usage[layout, name, shape], measured_runs, seen["executions_per_workflow"],
                                       background),
                }
            quiet = window(samples, retries, [unloaded[layout, name]], system.orch_queues)
            entry["unloaded"] = {"hop_ms_p50": quiet["hop_ms_p50"], "hop_ms_p99": quiet["hop_ms_p99"],
                                 "workflow_latency_ms": unloaded[layout, name].latency_ms()}
            found[name] = entry
        found["ours"]["dead_letters"] = dead_letters if layout == layouts[0] else 0
        found["ratio"] = {}
        for shape in counts:
            paired = [o.workflows_per_s / r.workflows_per_s
                      for o, r in zip(runs[layout, "ours", shape], runs[layout, "raw", shape], strict=True)]
            found["ratio"][shape] = {
                "median_ours_over_median_raw": round(
                    found["ours"][shape]["workflows_per_s"] / found["raw"][shape]["workflows_per_s"], 3),
                "per_round": [round(value, 3) for value in paired],
            }
        measured[layout] = found
    return measured


def _turns(layouts: list[str], rounds: int) -> list[tuple[str, list[int]]]:
    """When each layout's workers are up, and for which rounds.

    One layout: its workers stay up for every round. Several: the layouts' workers would share
    the systems' queues (a ``single`` worker and the two ``shared`` ones all serve every queue),
    so an idle layout's workers would take the measured one's messages; each layout's workers
    are started for its turn in each round instead (in reverse order in even rounds) and
    stopped after it, each turn with its own warm-up.
    """
    if len(layouts) == 1:
        return [(layouts[0], list(range(rounds)))]
    return [(layout, [index]) for index in range(rounds)
            for layout in (layouts if index % 2 == 0 else list(reversed(layouts)))]


#: Seconds over which the RabbitMQ node's CPU is read before the rounds, with no bench traffic.
BACKGROUND_S = 3.0


def _background(servers: dict[str, list[int]]) -> dict[str, float]:
    """CPU % of each server with no traffic from the bench: the shared RabbitMQ serves others too."""
    from bench import cpu

    meter = cpu.Meter(servers)
    meter.start()
    time.sleep(BACKGROUND_S)
    wall, used = meter.stop()
    return {name: round(100 * value / wall, 1) for name, value in used.items()}


#: Redis counters read around each measured run (``INFO cpu`` in seconds, commandstats in µs).
REDIS_COUNTERS = ("redis_info_cpu_s", "redis_command_us", "redis_commands")


def _redis_counters(client: redis.Redis) -> dict[str, float]:
    """Redis's own view: its CPU seconds (``INFO cpu``) and its command time and count (commandstats).

    ``INFO`` itself is left out of the command figures: the bench sends it, not the systems.
    """
    info: Any = client.info("cpu")
    stats: Any = client.info("commandstats")
    commands = {name: value for name, value in stats.items() if name != "cmdstat_info"}
    return {
        "redis_info_cpu_s": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        "redis_command_us": float(sum(value["usec"] for value in commands.values())),
        "redis_commands": float(sum(value["calls"] for value in commands.values())),
    }


def cpu_figures(usage: list[dict[str, float]], runs: list[DriveResult], executions_per_workflow: float,
                background: dict[str, float]) -> dict[str, Any]:
    """CPU % of one core and CPU µs per step of each process group over some runs, summed.

    A step is one task execution (orchestrator or service), counted by the probe. The RabbitMQ
    node is shared with whatever else uses it, so its share is also given net of its background
    CPU % (read with no bench traffic).
    """
    from bench import cpu

    wall = sum(each["wall_s"] for each in usage)
    steps = sum(run.workflows for run in runs) * executions_per_workflow
    names = [name for name in usage[0] if name not in ("wall_s", *REDIS_COUNTERS)] if usage else []
    totals = {name: sum(each[name] for each in usage) for name in names}
    figures: dict[str, Any] = {"wall_s": round(wall, 2), "steps": round(steps), **cpu.shares(wall, totals, steps)}
    if cpu.MACHINE in totals:
        # Busy CPU of the machine outside the processes measured here (the other system's idle
        # workers, other jobs on a shared machine), and the cores there are.
        others = totals[cpu.MACHINE] - sum(value for name, value in totals.items() if name != cpu.MACHINE)
        figures["others"] = cpu.shares(wall, {"others": max(0.0, others)}, steps)["others"]
        figures["cores"] = os.cpu_count() or 1
    for name, percent in background.items():
        net = max(0.0, totals.get(name, 0.0) - percent / 100 * wall)
        figures[name]["background_cpu_percent"] = percent
        figures[name]["cpu_us_per_step_net"] = round(net * 1e6 / steps, 1) if steps else 0.0
    if usage and steps and "redis_info_cpu_s" in usage[0]:
        figures["redis_info_cpu_us_per_step"] = round(sum(e["redis_info_cpu_s"] for e in usage) * 1e6 / steps, 1)
        figures["redis_command_us_per_step"] = round(sum(e["redis_command_us"] for e in usage) / steps, 1)
        figures["redis_commands_per_step"] = round(sum(e["redis_commands"] for e in usage) / steps, 2)
    return figures


#: The layouts with two worker processes per system; ``single`` is one process serving every queue.
TWO_WORKER_LAYOUTS = ("split", "shared")


def layouts_for(workers: tuple[int, ...], layout: str) -> list[str]:
    """The layouts measured for the given worker counts and ``--layout``: 1 is ``single``."""
    two = list(TWO_WORKER_LAYOUTS) if layout == "both" else [layout]
    return (["single"] if 1 in workers else []) + (two if 2 in workers else [])


def _dead_letters(client: Any) -> int:
    """Entries in every shard's dead-letter stream: anything there means a workflow went wrong."""
    return sum(int(client.xlen(stream)) for stream in key_space_for(client).dead_letter_streams())


def run(increment: int, fanout: int, inflight: int, pool: str, layout: str, rounds: int,
        broker: str = "redis", amqp_url: str | None = None, workers: tuple[int, ...] = (2,),
        state: str = "redis", history: bool = True) -> dict[str, Any]:
    """Measure every requested layout on the given broker; return the JSON document of this part.

    ``broker="redis"``: the private Redis is broker and state. ``"amqp"``: a fresh virtual host
    of the RabbitMQ at ``amqp_url`` is the broker of both systems, the private Redis their state
    (and the raw baseline's completion stream). ``workers``: 2 (the default) measures ``layout``
    with two worker processes per system, one layout after another; 1 measures one process
    serving every queue; both (1, 2) measure the one-process and the two-process layouts
    interleaved within each round, so that the growth from 1 to 2 processes is a same-run ratio.
    ``state="cluster"``: the state (and the raw baseline's completion stream) on a private
    3-primary Redis Cluster, 16 shards; the private Redis is then the broker only.
    ``history=False``: our workers store no history entry or index row
    (:data:`bench.inspect_cost.WITHOUT_HISTORY_ENV`), the baseline of what they cost.
    """
    from bench import procs, raw_celery
    from config.settings import Settings

    facts = common.machine()
    layouts = layouts_for(workers, layout)
    counts = {"increment": increment, "fanout": fanout}
    results: dict[str, Any] = {
        "config": {"broker": broker, "state": state, "history_and_index": history, "pool": pool,
                   "concurrency_per_worker": 1,
                   "workers_per_system": 2 if workers == (2,) else list(workers), "inflight": inflight,
                   "rounds": rounds, "workflows_per_round": counts, "warmup": WARMUP,
                   "unloaded_workflows": UNLOADED, "layouts": layouts},
        "layouts": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp, _ours_history(history):
        scratch = Path(tmp)
        with procs.redis_server(scratch / "redis") as redis_url, contextlib.ExitStack() as stack:
            broker_url = (
                redis_url if broker == "redis"
                else stack.enter_context(procs.rabbitmq_vhost(amqp_url or procs_default_amqp()))
            )
            if state == "cluster":
                redis_url = stack.enter_context(procs.redis_cluster(scratch / "cluster"))
            stripped = raw_celery.stock_config(Settings(broker_url=broker_url, redis_url=redis_url))[1]
            results["config"]["raw_baseline_without"] = stripped
            if broker == "amqp":
                from bench import amqp_cost

                results["publish_cost"] = amqp_cost.measure(broker_url)
            # One worker count: each layout in turn, as always. Both: every layout in every round.
            batches = [layouts] if len(workers) > 1 else [[name] for name in layouts]
            for batch in batches:
                results["layouts"].update(
                    measure_layouts(batch, pool, redis_url, counts, inflight, rounds, scratch, broker_url))
    best: dict[str, Any] = {}
    for shape in counts:
        name = max(layouts, key=lambda n: results["layouts"][n]["ours"][shape]["workflows_per_s"])
        ratio = results["layouts"][name]["ratio"][shape]["median_ours_over_median_raw"]
        best[shape] = {"layout": name, "ratio": ratio, "pass": ratio >= TARGET_RATIO}
    results["best"] = best
    results["target"] = f"ours / raw workflows/s >= {TARGET_RATIO}"
    if "single" in layouts and len(layouts) > 1:
        results["scaling"] = scaling(results["layouts"], counts)
    results["capacity"] = capacity(results["layouts"])
    results["load_average"] = common.load_average()
    results["machine"] = facts
    return results


def scaling(found: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """Workflows/s with two worker processes over one, per system, two-process layout and workflow.

    Each figure is the median over rounds of that round's own ratio (both measured in the same
    round), with the per-round values.
    """
    growth: dict[str, Any] = {}
    for layout in (name for name in found if name != "single"):
        for system in ("raw", "ours"):
            for shape in counts:
                two = found[layout][system][shape]["workflows_per_s_rounds"]
                one = found["single"][system][shape]["workflows_per_s_rounds"]
                per_round = [round(b / a, 3) if a else 0.0 for a, b in zip(one, two, strict=True)]
                growth.setdefault(layout, {}).setdefault(system, {})[shape] = {
                    "one_process": found["single"][system][shape]["workflows_per_s"],
                    "two_processes": found[layout][system][shape]["workflows_per_s"],
                    "growth": round(common.median(per_round), 2),
                    "per_round": per_round,
                }
    return growth


def capacity(found: dict[str, Any]) -> dict[str, Any]:
    """Steps per second one Redis primary and one RabbitMQ node would carry, from the CPU per step.

    Redis runs commands on one thread, so one primary carries at most 1e6 / (its CPU µs per step)
    steps/s, the whole core its own. The cost of an orchestrator and of a service step is
    separated by solving the two workflows' costs per workflow (:func:`bench.cpu.split_per_step`).
    RabbitMQ is multi-threaded (an Erlang scheduler per core): the figure is per core of the node,
    from its CPU net of its background, and a node scales with its cores until something else
    (its disk for persistent messages) limits it.
    """
    from bench import cpu

    out: dict[str, Any] = {}
    for layout, by_system in found.items():
        for system in ("raw", "ours"):
            entry: dict[str, Any] = {}
            per_workflow: dict[str, float] = {}
            for shape in ("increment", "fanout"):
                got = by_system[system].get(shape)
                if not got:
                    continue
                figures = got["cpu"]
                redis_us = figures.get("redis", {}).get("cpu_us_per_step", 0.0)
                per_workflow[shape] = redis_us * got["executions_per_workflow"]
                entry[shape] = {
                    "redis_cpu_us_per_step": redis_us,
                    "redis_steps_per_s_per_primary": round(1e6 / redis_us) if redis_us else None,
                }
                if "rabbitmq" in figures:
                    beam_us = figures["rabbitmq"].get("cpu_us_per_step_net", figures["rabbitmq"]["cpu_us_per_step"])
                    entry[shape]["rabbitmq_cpu_us_per_step"] = beam_us
                    entry[shape]["rabbitmq_steps_per_s_per_core"] = round(1e6 / beam_us) if beam_us else None
            if len(per_workflow) == 2:
                split = cpu.split_per_step(per_workflow["increment"], per_workflow["fanout"])
                entry["redis_us_per_orchestrator_step"] = round(split[0], 1) if split else None
                entry["redis_us_per_service_step"] = round(split[1], 1) if split else None
            out.setdefault(layout, {})[system] = entry
    return out


def _cpu_cell(figures: dict[str, Any], name: str) -> str:
    got = figures.get(name)
    if not got:
        return "–"
    text = f"{got['cpu_percent']:.0f}% ({got['cpu_us_per_step']:,.0f})"
    if "cpu_us_per_step_net" in got:
        text += f", net {got['cpu_us_per_step_net']:,.0f}"
    return text


def cpu_markdown(data: dict[str, Any]) -> str:
    """Where the CPU went in each measured run, and what one Redis primary / RabbitMQ node carries."""
    rows = []
    for layout, found in data["layouts"].items():
        for shape in ("increment", "fanout"):
            for system in ("raw", "ours"):
                got = found[system][shape]
                figures = got.get("cpu", {})
                if not figures:
                    continue
                held = data.get("capacity", {}).get(layout, {}).get(system, {}).get(shape, {})
                rows.append([
                    layout, shape, system, got["workflows_per_s"], _cpu_cell(figures, "workers"),
                    _cpu_cell(figures, "driver"), _cpu_cell(figures, "redis"), _cpu_cell(figures, "rabbitmq"),
                    _cpu_cell(figures, "others"),
                    f"{figures['machine']['cpu_percent']:.0f}% of {figures['cores'] * 100}%" if "machine" in figures else "–",
                    f"{figures.get('redis_info_cpu_us_per_step', 0):,.0f} / {figures.get('redis_command_us_per_step', 0):,.0f}"
                    f" / {figures.get('redis_commands_per_step', 0):.1f}",
                    f"{held.get('redis_steps_per_s_per_primary') or 0:,}",
                    f"{held.get('rabbitmq_steps_per_s_per_core') or 0:,}" if "rabbitmq_steps_per_s_per_core" in held else "–",
                ])
    if not rows:
        return ""
    table = common.table(
        ["layout", "workflow", "system", "workflows/s", "workers CPU % (µs/step)", "driver", "Redis", "RabbitMQ node",
         "other processes", "machine busy",
         "Redis INFO cpu µs / command µs / commands, per step", "steps/s per Redis primary", "steps/s per RabbitMQ core"],
        rows,
    )
    split = []
    for layout, by_system in data.get("capacity", {}).items():
        for system, entry in by_system.items():
            if entry.get("redis_us_per_orchestrator_step"):
                orch, service = entry["redis_us_per_orchestrator_step"], entry["redis_us_per_service_step"]
                split.append(f"{layout} {system}: {orch:,.0f} µs per orchestrator step ({1e6 / orch:,.0f}/s), "
                             f"{service:,.0f} µs per service step ({1e6 / service:,.0f}/s)")
    notes = (
        "CPU % = CPU time (`/proc/<pid>/stat` utime + stime, every thread, pool children included) over the run's "
        "wall time, in % of one core; in parentheses CPU µs per step (one task execution, orchestrator or service). "
        "workers = that system's worker processes of that layout; driver = the bench process publishing and reading "
        "completions; Redis = the private redis-server (broker and state with the Redis broker, state and completion "
        "streams with RabbitMQ); RabbitMQ node = its beam.smp, shared with anything else using it: net = minus its "
        "background CPU read with no bench traffic. Steps/s per Redis primary = 1e6 / Redis CPU µs per step (Redis "
        "executes commands on one thread, so one core); per RabbitMQ core = 1e6 / its net µs per step (it uses "
        "every core it has). other processes = the machine's busy CPU (`/proc/stat`) minus the processes above: "
        "the other system's idle workers and whatever else runs on the machine; machine busy = all of it, out of "
        "100% per core."
    )
    text = f"{table}\n\n{notes}\n"
    if split:
        text += "\nRedis CPU per step, separated by solving 3o + 2s (increment) and 11o + 10s (fan-out): " + "; ".join(split) + ".\n"
    return text


def scaling_markdown(data: dict[str, Any]) -> str:
    """Workflows/s with one and two worker processes per system, and the growth factor."""
    rows = [
        [layout, shape, system, got["one_process"], got["two_processes"],
         f"**{got['growth']:.2f}×** ({min(got['per_round']):.2f}–{max(got['per_round']):.2f})"]
        for layout, by_system in data.get("scaling", {}).items()
        for system, by_shape in by_system.items() for shape, got in by_shape.items()
    ]
    if not rows:
        return ""
    return common.table(
        ["2-process layout", "workflow", "system", "workflows/s, 1 process", "workflows/s, 2 processes",
         "growth 2 vs 1, median of rounds (rounds)"],
        rows,
    ) + "\n"


def markdown(data: dict[str, Any]) -> str:
    """The distributed tables: throughput and latency per layout, workflow and system."""
    config = data["config"]
    rows = []
    for layout, found in data["layouts"].items():
        for shape in ("increment", "fanout"):
            for system in ("raw", "ours"):
                got = found[system][shape]
                ratio = found["ratio"][shape]
                ratio_text = (f"**{ratio['median_ours_over_median_raw']:.2f}** "
                              f"({min(ratio['per_round']):.2f}–{max(ratio['per_round']):.2f})") if system == "ours" else ""
                mark = " ★" if system == "ours" and data["best"][shape]["layout"] == layout else ""
                rows.append([
                    f"{layout}{mark}", shape, system, got["workflows_per_s"],
                    "–".join(f"{min(got['workflows_per_s_rounds']):.0f} {max(got['workflows_per_s_rounds']):.0f}".split()),
                    got["executions_per_s"], ratio_text, got["executions_per_workflow"],
                    f"{got['hop_ms_p50']:.1f} / {got['hop_ms_p99']:.1f}",
                    f"{got['workflow_latency_ms']['p50']:.0f} / {got['workflow_latency_ms']['p99']:.0f}",
                    got["us_per_orchestrator_execution"], got["us_per_service_execution"],
                    f"{got['round_trips_per_orchestrator_execution']:.1f} / {got['round_trips_per_service_execution']:.1f}",
                    got["retries"],
                ])
    workers = config["workers_per_system"]
    count = f"{workers} workers" if isinstance(workers, int) else " or ".join(str(n) for n in workers) + " workers"
    head = (
        f"### Distributed ({BROKER_TITLES['cluster' if config.get('state') == 'cluster' else config.get('broker', 'redis')]}, "
        f"{count} per system `-P {config['pool']} -c 1`, "
        f"{config['inflight']} workflows in flight, median of {config['rounds']} interleaved rounds of "
        f"{config['workflows_per_round']['increment']} increment / {config['workflows_per_round']['fanout']} fan-out"
        f"{'' if config.get('history_and_index', True) else '; ours WITHOUT history and index'})\n\n"
    )
    body = common.table(
        ["layout", "workflow", "system", "workflows/s", "range", "executions/s", "ours/raw (rounds)", "executions/workflow",
         "hop ms p50 / p99", "workflow ms p50 / p99", "µs/orch exec", "µs/service exec",
         "Redis requests/exec orch / service", "retries"],
        rows,
    )
    unloaded = common.table(
        ["layout", "system", "hop ms p50 / p99, 1 workflow in flight", "increment workflow ms p50 / p99", "worker RSS MB"],
        [[layout, system, f"{found[system]['unloaded']['hop_ms_p50']:.2f} / {found[system]['unloaded']['hop_ms_p99']:.2f}",
          f"{found[system]['unloaded']['workflow_latency_ms']['p50']:.1f} / {found[system]['unloaded']['workflow_latency_ms']['p99']:.1f}",
          " + ".join(f"{w['rss_mb']:.0f}" for w in found[system]["worker_rss"])]
         for layout, found in data["layouts"].items() for system in ("raw", "ours")],
    )
    dead = sum(found["ours"]["dead_letters"] for found in data["layouts"].values())
    verdict = f"dead letters: {dead}; " + "; ".join(
        f"{shape}: {best['ratio']:.2f} ({best['layout']}) {'pass' if best['pass'] else '**FAIL**'}"
        for shape, best in data["best"].items()
    )
    stripped = ", ".join(f"`{name}`" for name in config["raw_baseline_without"]) or "nothing"
    notes = (
        f"Raw baseline: the runtime's Celery config without the settings naming project classes ({stripped}), "
        "i.e. stock Celery and kombu. "
        "Hop = a task's publish (`before_task_publish`) to the start of its execution (`task_prerun`), "
        "measured in the worker processes, first attempts only; executions/workflow counted the same way. "
        "µs/orch exec and µs/service exec = task body time (prerun to postrun) on the orchestrator and service queues; "
        "Redis requests/exec = redis-py requests sent during the task body (state and broker alike, publishes included). "
        "★ = the faster layout for our system."
        + (" single = one worker process serving every queue." if "single" in data["layouts"] else "")
    )
    scaled = scaling_markdown(data)
    spent = cpu_markdown(data)
    if "publish_cost" in data:
        from bench import amqp_cost

        spent += f"\n#### What a confirmed publish to RabbitMQ costs\n\n{amqp_cost.markdown(data['publish_cost'])}\n"
    return (f"{head}{body}\n\nTarget {data['target']}: {verdict}.\n\n{unloaded}\n\n{notes}\n\n"
            + (f"#### One worker process against two\n\n{scaled}\n" if scaled else "")
            + (f"#### Where the CPU went\n\n{spent}\n" if spent else "")
            + f"{common.machine_line(data['machine'])}\n")


@contextlib.contextmanager
def _ours_history(history: bool) -> Iterator[None]:
    """Tell the workers started inside (through their inherited environment) to store no history."""
    from bench.inspect_cost import WITHOUT_HISTORY_ENV

    if history:
        yield
        return
    os.environ[WITHOUT_HISTORY_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(WITHOUT_HISTORY_ENV, None)


def main(increment: int, fanout: int, inflight: int, pool: str, layout: str, rounds: int,
         json_path: Path | None, broker: str = "redis", amqp_url: str | None = None,
         workers: tuple[int, ...] = (2,), state: str = "redis", history: bool = True) -> dict[str, Any]:
    """Run the part, write its JSON and markdown, print the table."""
    data = run(increment, fanout, inflight, pool, layout, rounds, broker, amqp_url, workers, state, history)
    return common.report("distributed", data, markdown, json_path)
