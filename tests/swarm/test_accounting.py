"""Cost and latency accounting over real Redis, as ``swarm report`` and /metrics read it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from swarm import names
from swarm.accounting import latency_histograms, record_step, report, totals
from swarm.bus import Bus
from swarm.cli import parse_window
from swarm.errors import ConfigurationError
from swarm.messages import StepResult, TaskEvent, TokenUsage
from swarm.settings import Settings
from swarm.tasks import TaskRecord, TaskStore

from adapterfactory import register_builtins
from apiserver import api_server
from conftest import free_port
from redisfixture import TEST_REDIS_URL


def step(specialist: str, *, escalated: bool = False, valid: bool = True, latency: float,
         cost: float, teacher: float) -> StepResult:  # fmt: skip
    return StepResult(
        step_id="s", specialist=specialist, valid=valid, escalated=escalated, latency_ms=latency,
        cost_usd=cost, all_teacher_cost_usd=teacher, tokens=TokenUsage(prompt=100, completion=20),
    )  # fmt: skip


async def fill(redis: Redis) -> None:
    await record_step(redis, "t1", step("pii", latency=10, cost=0.001, teacher=0.010))
    await record_step(redis, "t1", step("sql", latency=30, cost=0.002, teacher=0.010))
    await record_step(redis, "t2", step("pii", escalated=True, latency=50, cost=0.011,
                                         teacher=0.010))  # fmt: skip
    await record_step(redis, "t3", step("pii", valid=False, latency=20, cost=0.001,
                                        teacher=0.010))  # fmt: skip


async def test_report_by_hand(redis: Redis) -> None:
    await fill(redis)
    summary = await report(redis, window_s=3600)
    assert (summary.tasks, summary.steps) == (3, 4)
    assert summary.escalation_rate == 0.25
    assert summary.cost_usd == pytest.approx(0.015)
    assert summary.all_teacher_cost_usd == pytest.approx(0.040)
    assert summary.saved_usd == pytest.approx(0.025) and summary.saved_share == 0.625
    assert summary.latency_ms_p50 == 25.0  # median of 10, 20, 30, 50
    pii = summary.specialists["pii"]
    assert pii["steps"] == 3 and pii["escalation_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert pii["failed"] == 1
    # A window that ends before the steps sees none of them.
    assert (await report(redis, window_s=60, now=time.time() - 3600)).steps == 0


async def test_running_totals_per_specialist(redis: Redis) -> None:
    await fill(redis)
    pii = (await totals(redis))["pii"]
    assert pii["steps"] == 3 and pii["escalations"] == 1 and pii["failed"] == 1
    assert pii["cost_usd"] == pytest.approx(0.013) and pii["prompt_tokens"] == 300


def finish(task: TaskRecord) -> list[TaskEvent]:
    task.state = "completed"
    return [TaskEvent(kind="state", state="completed")]


async def test_metrics_endpoint_exports_the_fleet_totals(redis: Redis) -> None:
    await fill(redis)
    # One step request delivered to a worker and not yet acknowledged.
    await register_builtins(redis)
    stream = names.steps_stream("pii")
    await redis.xgroup_create(stream, names.WORKERS_GROUP, id="0", mkstream=True)
    await redis.xadd(stream, {"x": "1"})
    await redis.xreadgroup(names.WORKERS_GROUP, "w1", {stream: ">"}, count=1)
    await Bus(redis).dead_letter(
        stream=names.TASKS_STREAM,
        group=names.ORCHESTRATORS_GROUP,
        entry_id="1-0",
        fields={},
        reason="test",
        deliveries=5,
    )
    store = TaskStore(redis)
    for task_id in ("a", "b"):
        await store.create(TaskRecord(id=task_id, input="x"))
        await store.update(task_id, finish)
    with api_server(Settings(redis_url=TEST_REDIS_URL), free_port()) as url:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{url}/metrics")).text
    assert 'swarm_specialist_steps{specialist="pii"} 3.0' in text
    assert 'swarm_specialist_escalations{specialist="pii"} 1.0' in text
    assert 'swarm_specialist_tokens{kind="completion",specialist="sql"} 20.0' in text
    assert 'swarm_specialist_all_teacher_cost_usd{specialist="sql"} 0.01' in text
    # Fleet-wide step latency per specialist and adapter version (pii: 10, 50, 20 ms).
    assert 'swarm_step_duration_seconds_bucket{adapter_version="base",le="0.05",' in text
    assert (
        'swarm_step_duration_seconds_bucket{adapter_version="base",le="0.05",specialist="pii"} 3.0'
        in text
    )
    assert 'swarm_step_duration_seconds_count{adapter_version="base",specialist="sql"} 1.0' in text
    pending = f'group="{names.WORKERS_GROUP}",stream="{names.steps_stream("pii")}"'
    assert f"swarm_pending_messages{{{pending}}} 1.0" in text
    assert 'swarm_tasks_total{state="completed"} 2.0' in text
    assert f'swarm_messages_dead_lettered_total{{stream="{names.TASKS_STREAM}"}} 1.0' in text


async def test_latency_histograms_are_cumulative_over_every_bound(redis: Redis) -> None:
    # One bucket is counted per step (10 ms, 70 ms, 3 s and 200 s); readers get running totals.
    for latency in (10, 70, 3_000, 200_000):
        await record_step(redis, "t", step("pii", latency=latency, cost=0, teacher=0))
    counts = (await latency_histograms(redis))[("pii", "base")]
    assert counts["0.05"] == 1
    assert counts["0.1"] == 2
    assert counts["0.25"] == counts["2.5"] == 2
    assert counts["5.0"] == counts["120.0"] == 3
    assert counts["+Inf"] == 4
    assert counts["sum"] == pytest.approx(0.01 + 0.07 + 3 + 200)


async def test_swarm_report_prints_a_table_then_json(redis: Redis) -> None:
    await fill(redis)
    result = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).with_name("swarm")), "report", "--since", "1h"],
        env={**os.environ, "SWARM_REDIS_URL": TEST_REDIS_URL},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "| pii | 3 | 33.3% | 1 |" in result.stdout
    assert json.loads(result.stdout.splitlines()[-1])["saved_share"] == 0.625


def test_window_parsing() -> None:
    assert parse_window("90s") == 90 and parse_window("24h") == 86400
    with pytest.raises(ConfigurationError, match=r"e\.g\. 24h"):
        parse_window("yesterday")
