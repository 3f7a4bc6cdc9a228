"""Orchestrators in their own processes: killed mid-task, and stopped by a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from orchestrator.runner import step_request_id
from swarm import names
from swarm.messages import StepSpec

from redisfixture import TEST_REDIS_URL
from taskdriver import SETTINGS, Driver, Start, settled, wait_for

HERE = Path(__file__).parent
TEXT = "Maria Lopez of Acme Corp emailed from Berlin."
REDACTED = "[PERSON] of Acme Corp emailed from Berlin."
PLAN = [
    StepSpec(id="s1", specialist="pii"),
    StepSpec(id="s2", specialist="entities", depends_on=["s1"]),
]


@pytest.fixture
async def spawn() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Processes the test starts; any still running at the end are killed."""
    processes: list[asyncio.subprocess.Process] = []
    yield processes
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


def env() -> dict[str, str]:
    return {
        **os.environ,
        "SWARM_REDIS_URL": TEST_REDIS_URL,
        "SWARM_HEARTBEAT_TIMEOUT_S": str(SETTINGS.heartbeat_timeout_s),
        # Nothing listens here: the model planner must fall back to the rules.
        "SWARM_VLLM_URLS": "http://127.0.0.1:9",
        "SWARM_LOG_LEVEL": "WARNING",
    }


async def start_doomed(
    spawn: list[asyncio.subprocess.Process], crash_at: str
) -> asyncio.subprocess.Process:
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "crashable_orchestrator.py"), crash_at, env=env()
    )
    spawn.append(doomed)
    return doomed


async def kill_when_hung(redis: Redis, doomed: asyncio.subprocess.Process, task_id: str) -> None:
    async def hung() -> bool:
        return await redis.lindex("test:hung", 0) == task_id.encode()

    await wait_for(hung, 10, "the doomed orchestrator to reach its crash point")
    doomed.send_signal(signal.SIGKILL)
    await doomed.wait()


async def test_a_task_outlives_an_orchestrator_killed_after_recording_a_result(
    driver: Driver,
    start_orchestrator: Start,
    redis: Redis,
    spawn: list[asyncio.subprocess.Process],
) -> None:
    doomed = await start_doomed(spawn, "result")
    task_id = await driver.submit(TEXT, PLAN)
    await driver.wait_requests("pii", task_id)  # dispatched by the doomed one
    await driver.answer(task_id, "s1", "pii", {"redacted_text": REDACTED})
    await kill_when_hung(redis, doomed, task_id)
    task = await driver.task(task_id)
    # Recorded and dispatched in one write, but never acknowledged.
    assert [s.status for s in task.steps] == ["completed", "running"]
    (second,) = await driver.requests("entities", task_id)
    assert second.body.input == {"text": REDACTED}  # type: ignore[union-attr]

    # The survivor reclaims the unacknowledged result once the dead one's heartbeat lapses and
    # handles it again: no second request, no second event.
    start_orchestrator()
    await settled(redis)
    assert len(await driver.requests("entities", task_id)) == 1
    await driver.answer(task_id, "s2", "entities", {"entities": "Acme Corp"})
    task = await driver.finished(task_id)
    assert task.state == "completed" and task.result == {"entities": "Acme Corp"}
    events = await driver.events(task_id)
    assert sum(e.kind == "step.completed" for e in events) == 2
    assert sum(e.kind == "step.started" for e in events) == 2
    (first,) = await driver.requests("pii", task_id)
    assert first.id == step_request_id(task_id, "s1")


async def test_a_task_outlives_an_orchestrator_killed_after_planning_it(
    driver: Driver,
    start_orchestrator: Start,
    redis: Redis,
    spawn: list[asyncio.subprocess.Process],
) -> None:
    doomed = await start_doomed(spawn, "submit")
    task_id = await driver.submit(TEXT, goal="redact it, then extract the entities")
    await kill_when_hung(redis, doomed, task_id)
    task = await driver.task(task_id)
    assert task.state == "working" and [s.status for s in task.steps] == ["running", "pending"]

    start_orchestrator()
    await settled(redis)  # the reclaimed submission is handled again, harmlessly
    assert len(await driver.requests("pii", task_id)) == 1
    await driver.answer(task_id, "s1", "pii", {"redacted_text": REDACTED})
    await driver.wait_requests("entities", task_id)
    await driver.answer(task_id, "s2", "entities", {"entities": "Acme Corp"})
    task = await driver.finished(task_id)
    assert (task.state, task.plan_source) == ("completed", "rules")
    events = await driver.events(task_id)
    assert sum(e.state == "working" for e in events) == 1  # planned once


async def test_swarm_orchestrator_runs_tasks_and_stops_on_sigterm(
    driver: Driver, redis: Redis, spawn: list[asyncio.subprocess.Process]
) -> None:
    code = (
        "import asyncio; from orchestrator.runner import run_orchestrator; "
        "from swarm.settings import get_settings; asyncio.run(run_orchestrator(get_settings()))"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=env())
    spawn.append(process)
    # A goal with the model server down: planned by the rules.
    task_id = await driver.submit(TEXT, goal="redact the names, then extract entities")
    await driver.wait_requests("pii", task_id, timeout_s=20)
    await driver.answer(task_id, "s1", "pii", {"redacted_text": REDACTED})
    await driver.wait_requests("entities", task_id)
    await driver.answer(task_id, "s2", "entities", {"entities": "Acme Corp"})
    task = await driver.finished(task_id)
    assert (task.state, task.plan_source) == ("completed", "rules")

    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    consumers = await redis.keys(names.heartbeat_key(names.ORCHESTRATORS_GROUP, "*"))
    assert consumers == []  # it left the group cleanly
