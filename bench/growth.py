"""How cost grows: fan-out width, live workflows in memory, context size (issue 12, item 4).

``python -m bench growth [--rounds R] [--steps S] [--live N] [--arvo FOLDER] [--no-redis] [--json PATH]``
measures three curves in process (LocalBroker, :class:`~orchestrator.memory.in_memory.InMemoryMachineMemory`),
each timed as ``python -m bench inprocess`` times its workflows (a thin wrapper around every
handler's ``execute``, so a step is the whole ``ArvoOrchestrator.execute``):

1. **Fan-out width** 10, 100 and 1,000: the examples' ``arvo.orc.fanout`` with that many values,
   about ``S`` orchestrator steps per width and round (fewer workflows as the width grows). Per
   width: µs per orchestrator step (mean, as the original reports it, and p50), the init step
   (which emits every call, so it is O(width) by nature) apart from the reply steps, and µs per
   workflow. With ``--arvo FOLDER`` (the original's benchmark, as for ``bench inprocess``) each
   width of ours is followed by the original's fan-out at the same width (``--variants fanout
   --k W``, same number of workflows and warm-up): ours, Arvo, ours, Arvo, ... Without it, ours
   alone and the table says no comparison was made.
2. **Live workflows**: increment workflows (3 steps) run while the memory already holds 1,000,
   then ``N`` (100,000 by default), unfinished workflows: increment workflows whose init step ran
   and whose ``com.value.read`` call was never answered (real init steps, through the
   orchestrator). Both memories are filled first, then measured in alternation every round. The
   process RSS is read after each fill.
3. **Context size** ~1 KB and ~100 KB: :mod:`bench.carry_machine` keeps a list of typed items in
   its context and makes 20 calls one after the other. Per size: µs per reply step, the init step,
   the packed context and the stored record (the msgpack blob the memory keeps, as the Redis
   memory stores it). Unless ``--no-redis``, the same workflows then run over
   ``RedisMachineMemory`` on a private ``redis-server``: bytes sent to Redis per step
   (``total_net_input_bytes``), the record's ``HSTRLEN`` and µs per step.

Every round's load average, the calibration at the start and the end, the date and the commit
go into the JSON and under the tables. Every workflow's output is checked.
"""

from __future__ import annotations

import contextlib
import gc
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from bench import common
from bench.inprocess import (
    WORKFLOWS,
    ArvoBench,
    TimedHandler,
    Workflow,
    arvo_result,
    init_event,
    run_workflows,
)

WIDTHS = (10, 100, 1000)
#: Issue 12: at 1,000 wide, µs per step within 2× of the 10-wide figure.
TARGET_WIDTH_RATIO = 2.0
#: The smaller live-workflow count, against ``--live``.
LIVE_SMALL = 1000
#: "Per-step cost unchanged", read on a shared machine: within 25% of the figure at 1,000.
TARGET_LIVE_RATIO = 1.25
#: Context sizes (packed bytes of the carried items) and the calls each carry workflow makes.
CONTEXT_BYTES = (1024, 100 * 1024)
CARRY_TICKS = 20
ROUNDS = 3
STEPS = 6000
LIVE = 100_000
MIN_WORKFLOWS = 3


class GrowthError(ValueError):
    """A bad argument; the message is one line for the user."""

    exit_code = 2


class StepTimer(TimedHandler):
    """:class:`TimedHandler` that keeps an orchestrator's init steps apart from its other steps.

    Why: a fan-out's init step emits every call, so it is O(width) by nature; the reply steps
    are the ones that should not grow.
    """

    __slots__ = ("init_ns",)

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.init_ns: list[int] = []

    def record(self, event: Any, elapsed_ns: int) -> None:
        """Keep one call's time; an init step's goes to ``init_ns``."""
        (self.init_ns if event.type == self.source else self.samples_ns).append(elapsed_ns)

    def clear(self) -> None:
        """Forget the warm-up."""
        self.samples_ns.clear()
        self.init_ns.clear()


@dataclass
class Steps:
    """What one timed run measured: wall time, and the orchestrator's init and other steps."""

    workflows: int
    seconds: float
    init_ns: list[int] = field(repr=False)
    other_ns: list[int] = field(repr=False)
    #: Full (generation 2) garbage collections during the run: their cost grows with the live heap.
    full_collections: int = 0

    @classmethod
    def of(cls, timers: Sequence[StepTimer], workflows: int, seconds: float) -> Steps:
        """Collect the orchestrators' samples of ``timers``."""
        orchestrators = [timer for timer in timers if timer.is_orchestrator]
        return cls(
            workflows, seconds,
            [ns for timer in orchestrators for ns in timer.init_ns],
            [ns for timer in orchestrators for ns in timer.samples_ns],
        )

    def summary(self) -> dict[str, float]:
        """µs per step (mean of all, p50), per init step (median), per other step, per workflow."""
        every = self.init_ns + self.other_ns
        return {
            "us_per_step": round(common.mean(every) / 1000, 2),
            "us_per_step_p50": round(common.percentile(every, 0.5) / 1000, 2),
            "us_per_init_step": round(common.median(self.init_ns) / 1000, 2),
            "us_per_other_step": round(common.mean(self.other_ns) / 1000, 2),
            "us_per_workflow": round(self.seconds / self.workflows * 1e6, 2),
            "steps_per_workflow": len(every) / self.workflows,
            "full_collections": self.full_collections,
        }


def timed_broker(memory: Any, build: Callable[[Any], Sequence[Any]]) -> tuple[Any, list[StepTimer]]:
    """A LocalBroker over the handlers ``build(memory)``, each wrapped in a :class:`StepTimer`."""
    from orchestrator.broker import LocalBroker

    timers = [StepTimer(handler) for handler in build(memory)]
    return LocalBroker(timers, keep_history=False), timers


def timed_run(broker: Any, timers: Sequence[StepTimer], workflow: Workflow, workflows: int, warmup: int) -> Steps:
    """Warm up, forget the warm-up, collect garbage, then time ``workflows`` workflows."""
    run_workflows(broker, workflow, warmup)
    for timer in timers:
        timer.clear()
    gc.collect()
    full = gc.get_stats()[2]["collections"]
    seconds = run_workflows(broker, workflow, workflows)
    steps = Steps.of(timers, workflows, seconds)
    steps.full_collections = gc.get_stats()[2]["collections"] - full
    return steps


def median_of(summaries: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The median over rounds of each figure, independently."""
    return {key: round(common.median(s[key] for s in summaries), 2) for key in summaries[0]}


def ratio(value: float, base: float) -> float:
    """``value / base`` rounded, 0.0 when there is no base."""
    return round(value / base, 3) if base else 0.0


# --------------------------------------------------------------------------- 1. fan-out width


def fanout_workflow(width: int) -> Workflow:
    """The examples' fan-out over ``width`` values, with its expected output."""
    values = list(range(width))
    base = WORKFLOWS["fanout"]
    return Workflow(base.orchestrator, base.dataschema, {"values": values}, {"total": 2 * sum(values), "replies": width})


def workflows_for(width: int, steps: int) -> tuple[int, int]:
    """Timed workflows and warm-up workflows at ``width`` for about ``steps`` orchestrator steps."""
    workflows = max(MIN_WORKFLOWS, steps // (width + 1))
    return workflows, max(2, workflows // 10)


def measure_width(width: int, steps: int) -> dict[str, float]:
    """One run of ours at ``width``: fresh memory and handlers, warm-up, timed workflows."""
    from examples.registry import build
    from orchestrator.memory.in_memory import InMemoryMachineMemory

    workflows, warmup = workflows_for(width, steps)
    broker, timers = timed_broker(InMemoryMachineMemory(), build)
    return timed_run(broker, timers, fanout_workflow(width), workflows, warmup).summary()


def measure_arvo_width(original: ArvoBench, width: int, steps: int) -> dict[str, float]:
    """One run of the original's fan-out at ``width`` (same workflows and warm-up as ours)."""
    workflows, warmup = workflows_for(width, steps)
    figures = arvo_result(original.document(workflows, warmup, "--variants", "fanout", "--k", str(width)), "fanout")
    return {
        "us_per_step": round(figures["us_per_orchestrator_step"], 2),
        "us_per_workflow": round(1e6 / figures["workflows_per_s"], 2),
        "steps_per_workflow": figures["orchestrator_steps_per_workflow"],
    }


def width_table(ours: Mapping[int, Sequence[Mapping[str, float]]],
                arvo: Mapping[int, Sequence[Mapping[str, float]]] | None) -> dict[str, Any]:
    """Medians per width, growth against the narrowest width, and Arvo/ours ratios when compared."""
    narrowest = min(ours)
    mine = {width: median_of(rounds) for width, rounds in ours.items()}
    rows: dict[str, Any] = {}
    for width, figures in mine.items():
        row: dict[str, Any] = {"ours": figures, "ours_growth": {
            "us_per_step": ratio(figures["us_per_step"], mine[narrowest]["us_per_step"]),
            "us_per_other_step": ratio(figures["us_per_other_step"], mine[narrowest]["us_per_other_step"]),
            "us_per_workflow": ratio(figures["us_per_workflow"], mine[narrowest]["us_per_workflow"]),
        }}
        if arvo is not None:
            theirs = median_of(arvo[width])
            base = median_of(arvo[narrowest])
            row["arvo"] = theirs
            row["arvo_growth"] = {
                "us_per_step": ratio(theirs["us_per_step"], base["us_per_step"]),
                "us_per_workflow": ratio(theirs["us_per_workflow"], base["us_per_workflow"]),
            }
            row["ratio_arvo_over_ours"] = {
                "us_per_step": ratio(theirs["us_per_step"], figures["us_per_step"]),
                "us_per_workflow": ratio(theirs["us_per_workflow"], figures["us_per_workflow"]),
                "round_us_per_step": [ratio(a["us_per_step"], o["us_per_step"])
                                      for a, o in zip(arvo[width], ours[width], strict=True)],
            }
        rows[str(width)] = row
    widest = str(max(ours))
    growth = rows[widest]["ours_growth"]["us_per_step"]
    rows["verdict"] = {
        "target": f"µs per step at {widest} wide <= {TARGET_WIDTH_RATIO:g}x the {narrowest}-wide figure",
        "measured": growth, "pass": growth <= TARGET_WIDTH_RATIO,
    }
    return rows


# --------------------------------------------------------------------------- 2. live workflows


def current_rss_mb() -> float:
    """This process's resident set size now (Linux ``/proc/self/statm``), else its peak."""
    import os

    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return common.peak_rss_mb()
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class LiveMemory:
    """A memory holding ``parked`` unfinished increment workflows, and a timed broker over it."""

    parked: int
    broker: Any
    timers: list[StepTimer]
    fill_seconds: float
    rss_mb_after_fill: float


def park(count: int, progress: Callable[[str], None]) -> LiveMemory:
    """A fresh memory with ``count`` increment workflows left waiting after their init step.

    Each is a real init step through the orchestrator (``execute``, which settles its outbox);
    the ``com.value.read`` call it emits is dropped, so the workflow waits for ever.
    """
    from examples.registry import build
    from orchestrator.memory.in_memory import InMemoryMachineMemory

    broker, timers = timed_broker(InMemoryMachineMemory(), build)
    workflow = WORKFLOWS["increment"]
    orchestrator = next(timer.inner for timer in timers if timer.source == workflow.orchestrator)
    start = time.perf_counter()
    for index in range(count):
        if not orchestrator.execute(init_event(workflow)):
            raise RuntimeError("a parked workflow's init step emitted nothing")
        if index and index % 20_000 == 0:
            progress(f"  growth: {index:,} of {count:,} workflows parked")
    seconds = time.perf_counter() - start
    gc.collect()
    return LiveMemory(count, broker, timers, seconds, current_rss_mb())


def live_table(small: LiveMemory, large: LiveMemory, rounds: Mapping[int, Sequence[Mapping[str, float]]],
               rss_before_mb: float) -> dict[str, Any]:
    """Medians per parked count, the large count's ratio to the small one, RSS and the verdict."""
    mine = {parked: median_of(figures) for parked, figures in rounds.items()}
    growth = ratio(mine[large.parked]["us_per_step"], mine[small.parked]["us_per_step"])
    per_workflow_kb = (large.rss_mb_after_fill - small.rss_mb_after_fill) * 1024 / (large.parked - small.parked)
    return {
        "rss_mb_before": round(rss_before_mb, 1),
        **{str(memory.parked): {
            "ours": mine[memory.parked],
            "rss_mb_after_fill": round(memory.rss_mb_after_fill, 1),
            "fill_seconds": round(memory.fill_seconds, 1),
            "round_us_per_step": [figures["us_per_step"] for figures in rounds[memory.parked]],
        } for memory in (small, large)},
        "rss_kb_per_parked_workflow": round(per_workflow_kb, 2),
        "verdict": {
            "target": f"µs per step with {large.parked:,} live <= {TARGET_LIVE_RATIO:g}x the figure with {small.parked:,}",
            "measured": growth, "pass": growth <= TARGET_LIVE_RATIO,
        },
    }


# --------------------------------------------------------------------------- 3. context size


def carry_items(target_bytes: int) -> list[dict[str, Any]]:
    """Typed items whose msgpack form is about ``target_bytes`` (at least one item)."""
    items: list[dict[str, Any]] = []
    size = 1
    while size < target_bytes:
        index = len(items)
        item = {"id": index, "name": f"item-{index:06d}", "qty": index % 7}
        items.append(item)
        size += len(msgpack.packb(item, use_bin_type=True))
    return items or [{"id": 0, "name": "item-000000", "qty": 0}]


def carry_workflow(target_bytes: int) -> Workflow:
    """``arvo.orc.carry`` with ~``target_bytes`` of items and :data:`CARRY_TICKS` calls."""
    items = carry_items(target_bytes)
    return Workflow("arvo.orc.carry", "#/bench/orchestrator/carry/1.0.0", {"items": items, "ticks": CARRY_TICKS},
                    {"ticks": CARRY_TICKS, "items": len(items)})


def carry_workflows(target_bytes: int, steps: int) -> int:
    """Carry workflows per round at ``target_bytes`` for about ``steps`` orchestrator steps per KB of context.

    A step's cost grows with its context, so the budget is divided by the size in KB: each size
    then takes about the same time, and the 100 KB case does not take a hundred times longer.
    """
    return max(MIN_WORKFLOWS, steps // ((CARRY_TICKS + 1) * max(1, target_bytes // 1024)))


def stored_sizes(memory: Any, subject: str) -> dict[str, int]:
    """The packed sizes of a stored record and of its context, as the memory stores them."""
    record = memory.read(subject).record
    return {
        "record_bytes": len(msgpack.packb(record, use_bin_type=True)),
        "context_bytes": len(msgpack.packb(record["state"]["context"], use_bin_type=True)),
    }


def measure_context(target_bytes: int, workflows: int) -> dict[str, float]:
    """One in-memory run of the carry workflow at ``target_bytes``; step times and stored sizes."""
    from bench.carry_machine import registry
    from orchestrator.memory.in_memory import InMemoryMachineMemory

    memory = InMemoryMachineMemory()
    broker, timers = timed_broker(memory, registry)
    workflow = carry_workflow(target_bytes)
    figures = timed_run(broker, timers, workflow, workflows, max(2, workflows // 10)).summary()
    last = broker.run(init_event(workflow))
    if last is None or last.data != workflow.expected:
        raise RuntimeError(f"the carry workflow did not complete as expected: {last}")
    return {**figures, **stored_sizes(memory, last.subject)}


def measure_context_redis(target_bytes: int, workflows: int, redis_url: str) -> dict[str, Any]:
    """The carry workflow over RedisMachineMemory: bytes sent per step, the stored blob, µs per step."""
    from bench.carry_machine import registry
    from bench.redis_cost import _record_size, _server_stats
    from config.settings import Settings
    from tasks.store.connections import redis_client, url_client
    from tasks.store.memory import RedisMachineMemory

    settings = Settings(broker_url=redis_url, redis_url=redis_url)
    workflow = carry_workflow(target_bytes)
    with contextlib.closing(redis_client(settings)) as client, contextlib.closing(url_client(redis_url)) as admin:
        broker, timers = timed_broker(RedisMachineMemory.from_settings(settings, client), registry)
        run_workflows(broker, workflow, 2)
        for timer in timers:
            timer.clear()
        admin.config_resetstat()
        seconds = run_workflows(broker, workflow, workflows - 1)
        steps = Steps.of(timers, workflows - 1, seconds)
        last = broker.run(init_event(workflow))  # its subject names the record measured
        stats = _server_stats(admin)
        if last is None or last.data != workflow.expected:
            raise RuntimeError(f"the carry workflow did not complete as expected over Redis: {last}")
        count = len(Steps.of(timers, workflows, seconds).other_ns) + workflows  # every step since the reset
        return {
            **steps.summary(),
            "bytes_in_per_step": round(stats["net_input_bytes"] / count),
            "bytes_out_per_step": round(stats["net_output_bytes"] / count),
            "record_blob_bytes": _record_size(admin, last.subject)["blob_bytes"],
        }


def context_table(rounds: Mapping[int, Sequence[Mapping[str, float]]],
                  redis: Mapping[int, Mapping[str, Any]] | None) -> dict[str, Any]:
    """Medians per context size, each size's ratio to the smallest, and the Redis figures."""
    smallest = min(rounds)
    mine = {size: median_of(figures) for size, figures in rounds.items()}
    table: dict[str, Any] = {}
    for size, figures in mine.items():
        table[str(size)] = {
            "ours": figures,
            "growth": {key: ratio(figures[key], mine[smallest][key])
                       for key in ("us_per_other_step", "us_per_init_step", "record_bytes", "context_bytes")},
            "redis": dict(redis[size]) if redis is not None else None,
        }
    return table


# --------------------------------------------------------------------------- the part


def run(
    rounds: int = ROUNDS,
    steps: int = STEPS,
    live: int = LIVE,
    arvo: Path | None = None,
    redis: bool = True,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure the three curves (the original's fan-out interleaved, with ``arvo``); the JSON document.

    Raises:
        GrowthError: a bad argument (checked before measuring).
        ArvoFolderError: ``arvo`` is not the original's benchmark folder (checked before measuring).
        ArvoError: the original's benchmark failed.
    """
    check_arguments(rounds, steps, live)
    original = ArvoBench(arvo) if arvo is not None else None
    facts = common.machine()
    round_loads: list[list[float]] = []
    ours_width: dict[int, list[dict[str, float]]] = {width: [] for width in WIDTHS}
    arvo_width: dict[int, list[dict[str, float]]] | None = {width: [] for width in WIDTHS} if original else None
    with contextlib.ExitStack() as stack:
        if original is not None:
            stack.enter_context(original)
            progress(f"  growth: installing and trying the original ({original.script})")
            original.prepare()
        for index in range(rounds):
            round_loads.append(common.load_average())
            for width in WIDTHS:
                ours_width[width].append(measure_width(width, steps))
                line = f"  growth round {index + 1}/{rounds} fan-out {width}: ours {ours_width[width][-1]['us_per_step']:.0f} µs/step"
                if original is not None and arvo_width is not None:
                    arvo_width[width].append(measure_arvo_width(original, width, steps))
                    line += f", Arvo {arvo_width[width][-1]['us_per_step']:.0f}"
                progress(line)

    rss_before = current_rss_mb()
    progress(f"  growth: parking {LIVE_SMALL:,} then {live:,} unfinished workflows")
    small, large = park(LIVE_SMALL, progress), park(live, progress)
    increment = WORKFLOWS["increment"]
    per_round = max(MIN_WORKFLOWS, steps // 3)
    live_rounds: dict[int, list[dict[str, float]]] = {small.parked: [], large.parked: []}
    for index in range(rounds):
        for memory in (small, large):
            figures = timed_run(memory.broker, memory.timers, increment, per_round, max(2, per_round // 10)).summary()
            live_rounds[memory.parked].append(figures)
        progress(f"  growth round {index + 1}/{rounds} live: " + ", ".join(
            f"{parked:,} parked {figures[-1]['us_per_step']:.0f} µs/step" for parked, figures in live_rounds.items()))
    live_result = live_table(small, large, live_rounds, rss_before)
    del small, large
    gc.collect()

    context_rounds: dict[int, list[dict[str, float]]] = {size: [] for size in CONTEXT_BYTES}
    for index in range(rounds):
        for size in CONTEXT_BYTES:
            context_rounds[size].append(measure_context(size, carry_workflows(size, steps)))
        progress(f"  growth round {index + 1}/{rounds} context: " + ", ".join(
            f"{size // 1024} KB {figures[-1]['us_per_other_step']:.0f} µs/step" for size, figures in context_rounds.items()))
    over_redis = context_over_redis(steps) if redis else None

    return {
        "fanout": width_table(ours_width, arvo_width),
        "live": live_result,
        "context": context_table(context_rounds, over_redis),
        "comparison": None if original is None else {
            "original": original.meta,
            "order": "interleaved: in each round, per width, ours then the original",
            "ratio": "arvo/ours for µs: higher is better for ours",
        },
        "load_average": common.load_average(),
        "run": {
            "rounds": rounds, "steps": steps, "live": [LIVE_SMALL, live], "widths": list(WIDTHS),
            "fanout_workflows": {str(width): workflows_for(width, steps)[0] for width in WIDTHS},
            "live_workflows_per_round": per_round, "carry_ticks": CARRY_TICKS,
            "carry_workflows": {str(size): carry_workflows(size, steps) for size in CONTEXT_BYTES},
            "context_bytes": list(CONTEXT_BYTES), "load_average_per_round": round_loads, "machine": facts,
            "calibration_sum_range_1000_us_at_end": round(common.calibration_us(), 2),
            "peak_rss_mb": round(common.peak_rss_mb(), 1),
        },
    }


def context_over_redis(steps: int) -> dict[int, dict[str, Any]]:
    """Both context sizes over RedisMachineMemory on a private redis-server, once (a quarter of a round's workflows)."""
    from bench import procs

    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp, procs.redis_server(Path(tmp) / "redis") as url:
        return {size: measure_context_redis(size, max(MIN_WORKFLOWS, carry_workflows(size, steps) // 4), url)
                for size in CONTEXT_BYTES}


def check_arguments(rounds: int, steps: int, live: int) -> None:
    """Refuse what cannot be measured, in one line.

    Raises:
        GrowthError: ``rounds`` or ``steps`` below 1, or ``live`` not above :data:`LIVE_SMALL`.
    """
    if rounds < 1 or steps < 1:
        raise GrowthError(f"--rounds and --steps must be at least 1, got {rounds} and {steps}")
    if live <= LIVE_SMALL:
        raise GrowthError(f"--live must be above {LIVE_SMALL:,} (it is compared with {LIVE_SMALL:,}), got {live:,}")


# --------------------------------------------------------------------------- markdown


def markdown(data: dict[str, Any]) -> str:
    """The three tables, the verdicts, and the machine lines."""
    run_info = data["run"]
    head = (f"### How cost grows (in process, LocalBroker, in-memory state; median of {run_info['rounds']} rounds, "
            f"about {run_info['steps']:,} orchestrator steps per width and round)\n\n")
    parts = [head + fanout_markdown(data["fanout"], data["comparison"], run_info),
             live_markdown(data["live"], run_info), context_markdown(data["context"], run_info)]
    load_end = ", ".join(f"{value:.2f}" for value in data["load_average"])
    end = (f"_Load average at each round's start (1 min): "
           f"{', '.join(f'{load[0]:.2f}' for load in run_info['load_average_per_round'])}; at the end {load_end}; "
           f"`sum(range(1000))` = {run_info['calibration_sum_range_1000_us_at_end']:.1f} µs at the end; "
           f"peak RSS {run_info['peak_rss_mb']:.0f} MB._")
    return "\n\n".join(parts) + f"\n\n{common.machine_line(run_info['machine'])}\n\n{end}\n"


def fanout_markdown(fanout: Mapping[str, Any], comparison: Mapping[str, Any] | None, run_info: Mapping[str, Any]) -> str:
    """Fan-out width: ours per width, growth against 10 wide, and the original when compared."""
    widths = [str(width) for width in run_info["widths"]]
    headers = ["width", "workflows", "µs/step (×10-wide)", "µs/step p50", "reply step µs", "init step µs", "µs/workflow"]
    if comparison is not None:
        headers += ["Arvo µs/step (×10-wide)", "Arvo µs/workflow", "Arvo/ours µs/step", "Arvo/ours µs/workflow"]
    rows = []
    for width in widths:
        row = fanout[width]
        ours = row["ours"]
        cells: list[Any] = [
            int(width), run_info["fanout_workflows"][width],
            f"{common.fmt(ours['us_per_step'])} ({row['ours_growth']['us_per_step']:.2f}×)", ours["us_per_step_p50"],
            ours["us_per_other_step"], ours["us_per_init_step"], ours["us_per_workflow"],
        ]
        if comparison is not None:
            cells += [f"{common.fmt(row['arvo']['us_per_step'])} ({row['arvo_growth']['us_per_step']:.2f}×)",
                      row["arvo"]["us_per_workflow"], f"**{row['ratio_arvo_over_ours']['us_per_step']:.2f}×**",
                      f"**{row['ratio_arvo_over_ours']['us_per_workflow']:.2f}×**"]
        rows.append(cells)
    title = "**Fan-out width** (the examples' `arvo.orc.fanout`; a step is the whole `ArvoOrchestrator.execute`)\n\n"
    verdict = fanout["verdict"]
    text = f"{title}{common.table(headers, rows)}\n\nTarget: {verdict['target']}: {verdict['measured']:.2f}× — {common.fmt(verdict['pass'])}."
    if comparison is None:
        return text + ("\n\n**No comparison was made**: the original was not run (`--arvo <folder>` runs its fan-out "
                       "at the same widths, interleaved with ours).")
    original = comparison["original"]
    per_round = "; ".join(f"{width} wide {', '.join(f'{r:.2f}' for r in fanout[width]['ratio_arvo_over_ours']['round_us_per_step'])}"
                          for width in widths)
    return text + (
        f"\n\nAgainst the TypeScript original (arvo-core {original.get('arvo_core')}, arvo-event-handler "
        f"{original.get('arvo_event_handler')}, Node {original.get('node')}, `--otel {original.get('otel')}`, its "
        f"`fanout` variant with `--k` = the width), interleaved per width: ours, Arvo, ours, Arvo, ... Arvo/ours above "
        f"1 means ours is cheaper. Arvo/ours µs/step per round: {per_round}.")


def live_markdown(live: Mapping[str, Any], run_info: Mapping[str, Any]) -> str:
    """Live workflows: per-step cost and RSS with 1,000 and ``--live`` unfinished workflows."""
    small, large = (str(count) for count in run_info["live"])
    rows = [[int(count), live[count]["ours"]["us_per_step"], live[count]["ours"]["us_per_step_p50"],
             live[count]["ours"]["us_per_workflow"], live[count]["ours"]["full_collections"],
             live[count]["rss_mb_after_fill"], live[count]["fill_seconds"],
             ", ".join(f"{value:.0f}" for value in live[count]["round_us_per_step"])] for count in (small, large)]
    verdict = live["verdict"]
    return (
        f"**Live workflows in memory** (increment workflows, {run_info['live_workflows_per_round']:,} per round, while "
        f"the memory holds that many unfinished ones: real init steps whose call was never answered)\n\n"
        + common.table(["unfinished workflows", "µs/step", "µs/step p50", "µs/workflow", "full GCs per round",
                        "RSS after filling (MB)",
                        "fill (s)", "µs/step per round"], rows)
        + f"\n\nRSS before filling {live['rss_mb_before']:.0f} MB; {live['rss_kb_per_parked_workflow']:.2f} KB of RSS per "
        f"unfinished workflow. Target: {verdict['target']}: {verdict['measured']:.2f}× — {common.fmt(verdict['pass'])}."
    )


def context_markdown(context: Mapping[str, Any], run_info: Mapping[str, Any]) -> str:
    """Context size: step cost and stored sizes per size, in memory and over Redis."""
    sizes = [str(size) for size in run_info["context_bytes"]]
    rows = []
    for size in sizes:
        row = context[size]
        ours, growth, redis = row["ours"], row["growth"], row["redis"]
        cells: list[Any] = [
            f"{int(size) // 1024} KB", ours["context_bytes"], ours["record_bytes"],
            f"{common.fmt(ours['us_per_other_step'])} ({growth['us_per_other_step']:.2f}×)",
            f"{common.fmt(ours['us_per_init_step'])} ({growth['us_per_init_step']:.2f}×)",
        ]
        cells += ([redis["us_per_other_step"], redis["bytes_in_per_step"], redis["record_blob_bytes"]]
                  if redis is not None else ["not run"] * 3)
        rows.append(cells)
    counts = " and ".join(f"{count:,}" for count in run_info["carry_workflows"].values())
    return (
        f"**Context size** (`bench/carry_machine.py`: typed items kept in the context, {run_info['carry_ticks']} calls "
        f"one after the other; {counts} workflows per size and round, a quarter of that over Redis)\n\n"
        + common.table(["context", "packed context (bytes)", "stored record (bytes)", "µs per reply step (×1 KB)",
                        "init step µs (×1 KB)", "over Redis: µs per reply step", "bytes sent to Redis per step",
                        "record blob in Redis (bytes)"], rows)
    )


def main(
    rounds: int, steps: int, live: int, json_path: Path | None, arvo: Path | None = None, redis: bool = True
) -> dict[str, Any]:
    """Run the part, write its JSON and markdown, print the tables; return the JSON document."""
    return common.report("growth", run(rounds, steps, live, arvo, redis), markdown, json_path)

