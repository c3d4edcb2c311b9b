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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench import common, probe
from bench.driver import DriveResult, drive, latency_ms
from tasks.store import keys
from tasks.store.connections import url_client

ORCH_QUEUES = ("arvo.orc.inc", "arvo.orc.fanout")
SERVICE_QUEUES = ("com.value.read", "com.number.increment", "com.number.double")
CLIENT = "com.bench.client"
WARMUP = {"increment": 10, "fanout": 4}
UNLOADED = 20
TARGET_RATIO = 0.7
#: The runtime's default dead-letter stream: anything in it means a workflow went wrong.
DEAD_LETTERS = "orch:deadletter"


@dataclass
class System:
    """How to run one system under test: its worker app, queues, publisher and completion stream."""

    name: str
    app_module: str
    orch_queues: tuple[str, ...]
    service_queues: tuple[str, ...]
    stream: str
    start: Callable[[str, int], str]
    is_failure: Callable[[dict[bytes, bytes]], bool]

    def queue_sets(self, layout: str) -> list[tuple[str, ...]]:
        """The ``-Q`` list of each of the two workers."""
        if layout == "split":
            return [self.orch_queues, self.service_queues]
        every = self.orch_queues + self.service_queues
        return [every, every]


#: How each broker is named in the table's title.
BROKER_TITLES = {"redis": "Celery + Redis", "amqp": "Celery + RabbitMQ broker, Redis state"}


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
            "ours", "bench.worker_app", ORCH_QUEUES, SERVICE_QUEUES, keys.outbox_stream(CLIENT),
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


def _drive(system: System, client: redis.Redis, shape: str, count: int, inflight: int) -> DriveResult:
    return drive(client, system.stream, lambda i: system.start(shape, i), count, inflight, is_failure=system.is_failure)


def measure_layout(layout: str, pool: str, redis_url: str, counts: dict[str, int], inflight: int, rounds: int,
                   scratch: Path, broker_url: str | None = None) -> dict[str, Any]:
    """Both systems' workers up at once (idle ones only wait on Redis), rounds interleaved.

    Why interleaved: the machine is shared and its load drifts; alternating raw and ours within
    each round (raw first in odd rounds, ours first in even ones) makes drift hit both alike.
    """
    from bench import procs

    broker_url = broker_url or redis_url
    found_systems = systems(redis_url, broker_url)
    client = url_client(redis_url)
    runs: dict[tuple[str, str], list[DriveResult]] = {(n, s): [] for n in found_systems for s in counts}
    unloaded: dict[str, DriveResult] = {}
    rss: dict[str, list[dict[str, float]]] = {}
    dead_before = int(client.xlen(DEAD_LETTERS))
    try:
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
                unloaded[name] = _drive(system, client, "increment", UNLOADED, 1)
            for index in range(rounds):
                order = list(found_systems) if index % 2 == 0 else list(reversed(found_systems))
                for name in order:
                    for shape, count in counts.items():
                        result = _drive(found_systems[name], client, shape, count, inflight)
                        runs[name, shape].append(result)
                        print(f"  distributed {layout} round {index + 1}/{rounds} {name} {shape}: "
                              f"{result.workflows_per_s:.1f} workflows/s", flush=True)
            rss = {name: [worker.rss_mb() for worker in group] for name, group in started.items()}
        dead_letters = int(client.xlen(DEAD_LETTERS)) - dead_before
    finally:
        client.close()
    found: dict[str, Any] = {}
    for name, system in found_systems.items():
        samples, retries = probe.load(scratch / f"{layout}-{name}")
        entry: dict[str, Any] = {"worker_rss": rss[name]}
        for shape in counts:
            measured = runs[name, shape]
            rates = [run.workflows_per_s for run in measured]
            latencies = [latency for run in measured for latency in run.latencies_s]
            entry[shape] = {
                "workflows_per_s": round(common.median(rates), 1),
                "workflows_per_s_rounds": [round(rate, 1) for rate in rates],
                "failures": sum(run.failures for run in measured),
                "workflow_latency_ms": latency_ms(latencies),
                **window(samples, retries, measured, system.orch_queues),
            }
        quiet = window(samples, retries, [unloaded[name]], system.orch_queues)
        entry["unloaded"] = {"hop_ms_p50": quiet["hop_ms_p50"], "hop_ms_p99": quiet["hop_ms_p99"],
                             "workflow_latency_ms": unloaded[name].latency_ms()}
        found[name] = entry
    found["ours"]["dead_letters"] = dead_letters
    found["ratio"] = {}
    for shape in counts:
        paired = [o.workflows_per_s / r.workflows_per_s for o, r in zip(runs["ours", shape], runs["raw", shape], strict=True)]
        found["ratio"][shape] = {
            "median_ours_over_median_raw": round(found["ours"][shape]["workflows_per_s"] / found["raw"][shape]["workflows_per_s"], 3),
            "per_round": [round(value, 3) for value in paired],
        }
    return found


def run(increment: int, fanout: int, inflight: int, pool: str, layout: str, rounds: int,
        broker: str = "redis", amqp_url: str | None = None, history: bool = True) -> dict[str, Any]:
    """Measure every requested layout on the given broker; return the JSON document of this part.

    ``broker="redis"``: the private Redis is broker and state. ``"amqp"``: a fresh virtual host
    of the RabbitMQ at ``amqp_url`` is the broker of both systems, the private Redis their state
    (and the raw baseline's completion stream). ``history=False``: our workers store no history
    entry or index row (:data:`bench.worker_app.WITHOUT_HISTORY_ENV`), the baseline of what they cost.
    """
    from bench import procs, raw_celery
    from config.settings import Settings

    facts = common.machine()
    layouts = ["split", "shared"] if layout == "both" else [layout]
    counts = {"increment": increment, "fanout": fanout}
    results: dict[str, Any] = {
        "config": {"broker": broker, "history_and_index": history, "pool": pool, "concurrency_per_worker": 1, "workers_per_system": 2, "inflight": inflight,
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
            stripped = raw_celery.stock_config(Settings(broker_url=broker_url, redis_url=redis_url))[1]
            results["config"]["raw_baseline_without"] = stripped
            for name in layouts:
                results["layouts"][name] = measure_layout(
                    name, pool, redis_url, counts, inflight, rounds, scratch, broker_url
                )
    best: dict[str, Any] = {}
    for shape in counts:
        name = max(layouts, key=lambda n: results["layouts"][n]["ours"][shape]["workflows_per_s"])
        ratio = results["layouts"][name]["ratio"][shape]["median_ours_over_median_raw"]
        best[shape] = {"layout": name, "ratio": ratio, "pass": ratio >= TARGET_RATIO}
    results["best"] = best
    results["target"] = f"ours / raw workflows/s >= {TARGET_RATIO}"
    results["load_average"] = common.load_average()
    results["machine"] = facts
    return results


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
    head = (
        f"### Distributed ({BROKER_TITLES[config.get('broker', 'redis')]}, 2 workers per system `-P {config['pool']} -c 1`, "
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
    )
    return (f"{head}{body}\n\nTarget {data['target']}: {verdict}.\n\n{unloaded}\n\n{notes}\n\n"
            f"{common.machine_line(data['machine'])}\n")


@contextlib.contextmanager
def _ours_history(history: bool) -> Iterator[None]:
    """Tell the workers started inside (through their inherited environment) to store no history."""
    from bench.worker_app import WITHOUT_HISTORY_ENV

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
         history: bool = True) -> dict[str, Any]:
    """Run the part, write its JSON and markdown, print the table."""
    data = run(increment, fanout, inflight, pool, layout, rounds, broker, amqp_url, history)
    return common.report("distributed", data, markdown, json_path)
