"""Scenario 3, lock expiry: a step that outlives its lock cannot overwrite the next holder's state.

Workers run with a 1 s subject lock and no auto-renewal, and the test registry
(``tests.e2e.faults.registries:slow``) makes the orchestrator sleep 2 s right before the
compare-and-set write of marked events, the first time each is written: so the step's lease
has expired when it writes, and by then another worker process has usually taken the lock and
written the subject's next state. Marked are the init event of 4 fan-out workflows (each init
published twice, as the identical message) and the reply for one value of each.

Proven, per marked event, from markers written inside the workers: the slow write was refused
by the lease fence ("Lock lost", the Lua write compares the lock's token, so even an unchanged
version cannot be overwritten), and the retry then either found the event already consumed and
changed nothing, or applied it on the newer state (for at least one reply, on a version another
holder wrote meanwhile). Per workflow (the 4 marked ones and 26 others running alongside): the
correct output, exactly the transitions its shape needs, one completion id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.e2e.faults.registries import SLOW_S, SLOW_VALUE
from tests.helpers.chaos import (
    FAST_REDELIVERY,
    Cluster,
    Completions,
    audit,
    dead_letters,
    explain,
    fanout_workflow,
    new_task_id,
    publish,
    workflow_mix,
)
from tests.helpers.redis_server import RedisServer

LOCK_SETTINGS = {
    **FAST_REDELIVERY,
    "handlers": "tests.e2e.faults.registries:slow",
    "lock_expire_s": 1,
    "lock_auto_renewal": False,
    "visibility_timeout_s": 5,
}


@pytest.mark.timeout(180)
def test_a_step_that_outlives_its_lock_is_refused_and_its_retry_changes_nothing_twice(
    fault_redis: RedisServer, redis_client: redis.Redis, cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    cluster = cluster_factory(fault_redis.url(), **LOCK_SETTINGS)
    env = {**cluster.env, "FAULTS_MARKER_DIR": str(markers)}
    cluster.start(concurrency=2, env=env)
    cluster.start(concurrency=2, env=env)
    app = cluster.app()
    slow = [fanout_workflow([SLOW_VALUE, index, 2 * index, 3 * index]) for index in range(1, 5)]
    others = workflow_mix(20, 6, seed=31)
    completions = Completions(redis_client)

    for workflow in slow:
        task_id = new_task_id()
        publish(app, workflow.init, task_id=task_id)
        publish(app, workflow.init, task_id=task_id)  # the identical message, delivered twice
    for workflow in others:
        publish(app, workflow.init)
    workflows = slow + others
    missing = completions.wait_for([w.subject for w in workflows], timeout=120)

    result = audit(redis_client, workflows, completions)
    letters = dead_letters(redis_client)
    slept = sorted(path.name.removeprefix("slow-") for path in markers.glob("slow-*"))
    result.report("lock-expiry", f"step-sleeps-{SLOW_S:.0f}s-past-1s-lock x{len(slept)}")
    assert not missing, "\n".join(explain(redis_client, subject) for subject in missing[:5])
    assert not letters, [(letter.reason, letter.error) for letter in letters[:5]]
    assert not result.lost, result.lost[:10]
    assert not result.duplicated, result.duplicated[:10]

    # Every slow step was a real stale writer, refused by the lease fence. An init (delivered
    # twice) was then applied by exactly one attempt and the other changed nothing; a reply
    # (delivered once) was re-run by its retry on the state written meanwhile.
    assert len(slept) == 2 * len(slow), slept  # each init and each marked reply slept once
    newer = 0
    for event_id in slept:
        slow_step = json.loads((markers / f"slow-{event_id}").read_text())
        refused = markers / f"refused-{event_id}"
        assert refused.exists(), f"the stale write of {event_id} was not refused"
        assert "Lock lost" in refused.read_text(), refused.read_text()
        noop = (markers / f"noop-{event_id}").exists()
        reapplied = markers / f"reapplied-{event_id}"
        if slow_step["type"] == "arvo.orc.fanout":
            assert noop, f"init {event_id}: neither delivery ended as a no-op after the refusal"
        else:
            assert not noop, f"reply {event_id} was found consumed, but it was never applied before"
            assert reapplied.exists(), f"reply {event_id} was not re-applied after the refusal"
            newer += json.loads(reapplied.read_text())["read"] > slow_step["prev"]
    assert newer >= 1, "no slow reply found a state written by another holder in the meantime"
    print(f"  {len(slept)} stale writes refused; {newer} replies re-ran on a state another holder wrote")
