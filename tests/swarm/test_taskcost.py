"""A task's cost totals: computed from its steps, shown with it, never stored as input."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from swarm.messages import TokenUsage
from swarm.tasks import StepRecord, TaskRecord, TaskStore


def task() -> TaskRecord:
    return TaskRecord(
        id="t1",
        input="x",
        steps=[
            StepRecord(id="a", specialist="pii", cost_usd=0.001, all_teacher_cost_usd=0.004,
                       tokens=TokenUsage(prompt=100, completion=10)),
            StepRecord(id="b", specialist="sql", cost_usd=0.005, all_teacher_cost_usd=0.004,
                       escalated=True, tokens=TokenUsage(prompt=50, completion=5)),
        ],
    )  # fmt: skip


def test_totals_by_hand() -> None:
    cost = task().cost
    assert cost.cost_usd == pytest.approx(0.006)
    assert cost.all_teacher_cost_usd == pytest.approx(0.008)
    assert cost.saved_usd == pytest.approx(0.002)
    assert (cost.prompt_tokens, cost.completion_tokens, cost.escalated_steps) == (150, 15, 1)


async def test_totals_are_shown_and_survive_a_round_trip(redis: Redis) -> None:
    store = TaskStore(redis)
    assert await store.create(task())
    loaded = await store.get("t1")
    assert loaded.model_dump(mode="json")["cost"]["escalated_steps"] == 1
    assert TaskRecord.model_validate(loaded.model_dump(mode="json")) == loaded
