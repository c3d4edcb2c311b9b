"""Command line of the benchmarks.

``python -m bench`` with no part runs every part, each in a fresh ``python -m bench <part>``
subprocess: the in-process part's peak RSS is then its own (not inflated by Celery or by the
other parts), and a part that fails does not stop the others. The parts' markdown tables are
then printed together and written to ``bench/results/latest.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import common

PARTS = ("inprocess", "distributed", "contention", "redis-cost", "timers", "inspect", "sentinel")


def parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per part; none runs everything."""
    top = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of the orchestrator against same-run baselines. With no part, runs every part, "
        "each in its own process, and writes bench/results/latest.md (method: bench/README.md).",
    )
    sub = top.add_subparsers(dest="part")

    inproc = sub.add_parser(
        "inprocess", help="example workflows on the LocalBroker; with --arvo, interleaved with the TypeScript original"
    )
    inproc.add_argument("--workflows", type=positive, default=2000, help="timed workflows per run (default 2000)")
    inproc.add_argument(
        "--rounds", "--runs", type=positive, default=3, dest="rounds",
        help="rounds (ours, then the original's with --arvo); the median is reported (default 3)",
    )
    inproc.add_argument("--warmup", type=int, default=200, help="warm-up workflows per run (default 200)")
    inproc.add_argument(
        "--arvo", type=Path, default=None, metavar="FOLDER",
        help="the original's benchmark folder (with its `run` script): run it interleaved with ours and report "
        "ratios; without it, ours alone and no comparison",
    )
    inproc.add_argument("--json", type=Path, default=None, help="where to write the JSON")

    dist = sub.add_parser("distributed", help="Celery + Redis, 2 workers, vs raw Celery chains of the same shape")
    dist.add_argument("--increment", type=int, default=300, help="increment workflows per round (default 300)")
    dist.add_argument("--fanout", type=int, default=100, help="fan-out workflows per round (default 100)")
    dist.add_argument("--inflight", type=int, default=20, help="workflows kept in flight (default 20)")
    dist.add_argument("--pool", choices=("solo", "prefork"), default="solo", help="worker pool (default solo)")
    dist.add_argument(
        "--layout", choices=("split", "shared", "both"), default="both",
        help="split: one worker per queue group; shared: both serve all queues (default: measure both)",
    )
    dist.add_argument("--rounds", type=int, default=3, help="interleaved raw/ours rounds; median reported (default 3)")
    dist.add_argument(
        "--broker", choices=("redis", "amqp"), default="redis",
        help="redis: the private Redis is broker and state; amqp: a fresh vhost of RabbitMQ is the broker of both "
        "systems, Redis their state (default redis)",
    )
    dist.add_argument("--amqp-url", default=None, help="the RabbitMQ for --broker amqp (default amqp://guest:guest@127.0.0.1:5672)")
    dist.add_argument(
        "--without-history", action="store_true",
        help="our workers store no history entry or index row (the baseline of what history and the index cost)",
    )
    dist.add_argument("--json", type=Path, default=None)

    cont = sub.add_parser("contention", help="fan-in of 50 parallel replies to one subject on 2 workers")
    cont.add_argument("--values", type=int, default=50, help="parallel replies (default 50)")
    cont.add_argument("--repeats", type=int, default=5, help="repetitions (default 5)")
    cont.add_argument("--json", type=Path, default=None)

    cost = sub.add_parser("redis-cost", help="Redis round trips and bytes per orchestrator step")
    cost.add_argument("--increment", type=int, default=200, help="increment workflows (default 200)")
    cost.add_argument("--fanout", type=int, default=50, help="fan-out workflows (default 50)")
    cost.add_argument("--json", type=Path, default=None)

    timers = sub.add_parser("timers", help="durable timers: round trips added, Redis memory, firing lateness")
    timers.add_argument("--steps", type=positive, default=2000, help="init steps of each machine for the cost (default 2000)")
    timers.add_argument("--timers", type=positive, default=10_000, help="pending timers (default 10000)")
    timers.add_argument(
        "--spread", type=positive_seconds, default=60.0, help="seconds over which the timers come due (default 60)"
    )
    timers.add_argument("--json", type=Path, default=None)

    inspect = sub.add_parser("inspect", help="history and search index: cost per step, list/count speed, memory")
    inspect.add_argument("--workflows", type=positive, default=200, help="increment workflows for the step cost (default 200)")
    inspect.add_argument(
        "--stored", type=positive, default=100_000, help="workflows loaded for list and count (default 100000)"
    )
    inspect.add_argument("--json", type=Path, default=None)

    sentinel = sub.add_parser("sentinel", help="what WAIT 1 (ORCH_REDIS_WAIT_REPLICAS) costs a step: master + replica")
    sentinel.add_argument("--workflows", type=positive, default=300, help="increment workflows per round (default 300)")
    sentinel.add_argument("--rounds", type=positive, default=5, help="interleaved WAIT 0 / WAIT 1 rounds (default 5)")
    sentinel.add_argument("--json", type=Path, default=None)
    return top


def positive(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """An argument that must be a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run one part, or all of them; return the exit code."""
    args = parser().parse_args(argv)
    if args.part is None:
        return run_all()
    if args.part == "inprocess":
        from bench import inprocess

        try:
            inprocess.main(args.workflows, args.json, rounds=args.rounds, warmup=args.warmup, arvo=args.arvo)
        except inprocess.ArvoError as error:
            print(f"python -m bench inprocess: {error}", file=sys.stderr)
            return error.exit_code
    elif args.part == "distributed":
        from bench import distributed

        distributed.main(
            args.increment, args.fanout, args.inflight, args.pool, args.layout, args.rounds, args.json,
            broker=args.broker, amqp_url=args.amqp_url, history=not args.without_history,
        )
    elif args.part == "contention":
        from bench import contention

        contention.main(args.values, args.repeats, args.json)
    elif args.part == "redis-cost":
        from bench import redis_cost

        redis_cost.main(args.increment, args.fanout, args.json)
    elif args.part == "timers":
        from bench import timers

        timers.main(args.steps, args.timers, args.spread, args.json)
    elif args.part == "inspect":
        from bench import inspect_cost

        inspect_cost.main(args.workflows, args.stored, args.json)
    elif args.part == "sentinel":
        from bench import sentinel

        sentinel.main(args.workflows, args.rounds, args.json)
    return 0


def run_all() -> int:
    """Every part in its own subprocess, then ``latest.md`` from their markdown files."""
    started = time.monotonic()
    failed: list[str] = []
    sections: list[str] = []
    for part in PARTS:
        print(f"== {part}", flush=True)
        stale = common.RESULTS_DIR / f"{part}.md"
        stale.unlink(missing_ok=True)
        code = subprocess.run([sys.executable, "-m", "bench", part], cwd=common.REPO_ROOT, check=False).returncode
        if code != 0 or not stale.exists():
            failed.append(part)
            sections.append(f"### {part}\n\n**FAILED** (exit code {code}); see the output above.\n")
        else:
            sections.append(stale.read_text(encoding="utf-8"))
    elapsed = time.monotonic() - started
    header = (
        "# Benchmark results\n\n"
        f"`python -m bench`, {elapsed:.0f} s in all; load average at the end "
        f"{', '.join(f'{v:.2f}' for v in common.load_average())}.\n"
    )
    latest = header + "\n" + "\n".join(sections)
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (common.RESULTS_DIR / "latest.md").write_text(latest, encoding="utf-8")
    print("\n" + latest)
    if failed:
        print(f"failed parts: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
