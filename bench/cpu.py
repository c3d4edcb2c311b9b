"""CPU time of the processes in a distributed benchmark, read from ``/proc``.

Why: throughput alone does not say what limits it. Sampling the CPU time (``utime + stime`` of
``/proc/<pid>/stat``, every thread of the process included) of each worker, of the bench's own
driver, of the Redis server and of the RabbitMQ node before and after a measured round gives each
one's share of the round (CPU % of one core) and its cost per workflow step. The one process that
is saturated, or the cores all being busy, is what limits the throughput.

Linux only (``/proc``); every figure is a difference of two readings, so it does not matter when a
process started. A process that has gone reads as 0 and is reported as missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Clock ticks per second of ``/proc/<pid>/stat`` times.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_stat(text: str, ticks: int = CLOCK_TICKS) -> float:
    """CPU seconds (user + system) of a process from the text of its ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself hold spaces or parentheses, so
    the fields are counted from the *last* ``)``: utime and stime are fields 14 and 15.

    Raises:
        ValueError: the text is not a ``stat`` line.
    """
    end = text.rfind(")")
    if end < 0:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    fields = text[end + 1:].split()
    # fields[0] is field 3 (state): utime (14) and stime (15) are fields[11] and fields[12].
    if len(fields) < 13:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    return (int(fields[11]) + int(fields[12])) / ticks


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds of a live process (all its threads), or None if it is gone or unreadable."""
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError):
        return None


def parse_machine_stat(text: str, ticks: int = CLOCK_TICKS) -> float:
    """Busy CPU seconds of the whole machine, every core, from the text of ``/proc/stat``.

    Busy = user + nice + system + irq + softirq + steal of the ``cpu`` line (idle and iowait
    are not); guest time is already counted in user.

    Raises:
        ValueError: no ``cpu`` line.
    """
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu" and len(fields) >= 9:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[1:9])
            return (user + nice + system + irq + softirq + steal) / ticks
    raise ValueError("no cpu line in /proc/stat")


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (:func:`parse_machine_stat`), 0 if unreadable."""
    try:
        return parse_machine_stat(Path("/proc/stat").read_text())
    except (OSError, ValueError):
        return 0.0


#: The name under which :class:`Meter` reports the whole machine's busy CPU.
MACHINE = "machine"


def children(pid: int) -> list[int]:
    """Direct children of a process (a prefork worker's pool processes)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def group_cpu_s(pids: Iterable[int], *, with_children: bool = False) -> float:
    """CPU seconds of some processes (and their direct children if asked); gone ones count 0."""
    total = 0.0
    for pid in pids:
        for each in (pid, *(children(pid) if with_children else ())):
            total += process_cpu_s(each) or 0.0
    return total


def parse_rabbitmq_pid(status_json: str) -> int:
    """The OS pid of the RabbitMQ node from ``rabbitmqctl status --formatter json``.

    Raises:
        ValueError: no pid in it.
    """
    try:
        pid = json.loads(status_json)["pid"]
        return int(pid)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"no pid in rabbitmqctl status: {status_json[:120]!r}") from error


def rabbitmq_pid() -> int:
    """The OS pid of the local RabbitMQ node (its ``beam.smp``), asked of ``rabbitmqctl status``.

    Reading a pid changes nothing on the node; the benchmark only reads ``/proc/<pid>/stat``.

    Raises:
        RuntimeError: ``rabbitmqctl`` is missing or failed.
    """
    binary = shutil.which("rabbitmqctl")
    if binary is None:
        raise RuntimeError("rabbitmqctl is not installed")
    done = subprocess.run([binary, "-q", "status", "--formatter", "json"], capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl status exited {done.returncode}: {done.stderr.strip()}")
    return parse_rabbitmq_pid(done.stdout)


@dataclass
class Meter:
    """CPU seconds of named groups of processes between :meth:`start` and :meth:`stop`.

    The whole machine's busy CPU (every core, every process) is read too, as :data:`MACHINE`: it
    tells whether the cores were full, and how much of them went to processes not measured here.

    Args:
        groups: name -> the pids of that group.
        with_children: the groups whose processes' children count too (a prefork worker's pool);
            not the bench's own process, whose children are the very workers and servers measured.
    """

    groups: Mapping[str, Iterable[int]]
    with_children: frozenset[str] = frozenset()
    began: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0

    def _read(self) -> dict[str, float]:
        read = {name: group_cpu_s(pids, with_children=name in self.with_children) for name, pids in self.groups.items()}
        read[MACHINE] = machine_busy_s()
        return read

    def start(self) -> None:
        """Take the first reading."""
        self.started_at = time.monotonic()
        self.began = self._read()

    def stop(self) -> tuple[float, dict[str, float]]:
        """Wall seconds since :meth:`start` and the CPU seconds each group used meanwhile."""
        now = self._read()
        wall = time.monotonic() - self.started_at
        return wall, {name: max(0.0, now[name] - self.began.get(name, 0.0)) for name in now}


def shares(wall_s: float, cpu_s: Mapping[str, float], steps: float) -> dict[str, dict[str, float]]:
    """Each group's CPU % of one core over ``wall_s`` and its CPU µs per step.

    Returns:
        name -> ``{"cpu_percent": ..., "cpu_us_per_step": ...}``; 0 for no time or no steps.
    """
    return {
        name: {
            "cpu_percent": round(100 * used / wall_s, 1) if wall_s > 0 else 0.0,
            "cpu_us_per_step": round(used * 1e6 / steps, 1) if steps > 0 else 0.0,
        }
        for name, used in cpu_s.items()
    }


def split_per_step(increment_us: float, fanout_us: float) -> tuple[float, float] | None:
    """Cost per orchestrator step and per service step from the cost per workflow of each shape.

    An increment workflow is 3 orchestrator steps and 2 service steps, a fan-out 11 and 10, so
    ``3o + 2s = increment_us`` and ``11o + 10s = fanout_us`` give both. None when the solution is
    not positive (the two measurements are too noisy to separate them).
    """
    orchestrator = (10 * increment_us - 2 * fanout_us) / 8
    service = (3 * fanout_us - 11 * increment_us) / 8
    if orchestrator <= 0 or service <= 0:
        return None
    return orchestrator, service
