"""``python -m bench inspect`` on a small scale: a private redis-server, no workers.

No speed is asserted (it depends on the machine); what is asserted holds on any machine:
history and the index add no Redis round trip to a step, the listings and counts return what
was loaded, and a history entry takes some memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main


@pytest.mark.timeout(180)
def test_bench_inspect_measures_step_cost_search_and_memory(tmp_path: Path) -> None:
    target = tmp_path / "inspect.json"

    assert main(["inspect", "--workflows", "30", "--stored", "2000", "--json", str(target)]) == 0

    data = json.loads(target.read_text(encoding="utf-8"))
    step = data["step"]
    assert step["extra_round_trips_per_step"] == 0
    assert step["on"]["round_trips_per_step"] == 3
    assert step["pass"] is True
    search = data["search"]
    assert sum(search["by_status"].values()) == search["stored"] == 2000
    assert search["queries"]["count --status failed"]["result"] == search["by_status"]["failed"]
    assert search["queries"]["count (all)"]["result"] == 2000
    assert search["index_set_bytes_per_workflow"] > 0
    memory = data["memory"]
    assert memory["history_entries"] == 3 * memory["workflows"]
    assert memory["bytes_per_history_entry"] > 0
    assert "### History and search index" in target.with_suffix(".md").read_text(encoding="utf-8")
