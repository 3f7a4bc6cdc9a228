"""Task records in real Redis: create, concurrent updates, event log replay, external failure."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from swarm import names
from swarm.messages import TaskEvent
from swarm.tasks import StepRecord, TaskNotFound, TaskRecord, TaskStore


async def test_create_get_and_no_second_create(redis: Redis) -> None:
    store = TaskStore(redis)
    task = TaskRecord(id="t1", input="hello", steps=[StepRecord(id="s1", specialist="pii")])
    assert await store.create(task)
    assert not await store.create(task)
    loaded = await store.get("t1")
    assert loaded.steps[0].specialist == "pii" and loaded.state == "submitted"
    try:
        await store.get("missing")
    except TaskNotFound:
        pass
    else:
        raise AssertionError("expected TaskNotFound")


async def test_concurrent_updates_are_not_lost(redis: Redis) -> None:
    store = TaskStore(redis)
    steps = [StepRecord(id=f"s{i}", specialist="pii") for i in range(20)]
    await store.create(TaskRecord(id="t1", input="x", steps=steps))

    async def complete(step_id: str) -> None:
        def change(task: TaskRecord) -> list[TaskEvent]:
            task.step(step_id).status = "completed"
            return [TaskEvent(kind="step.completed", step_id=step_id)]

        await store.update("t1", change)

    await asyncio.gather(*(complete(f"s{i}") for i in range(20)))
    task = await store.get("t1")
    assert all(step.status == "completed" for step in task.steps)
    events = await store.events("t1")
    assert len(events) == 21  # the initial state event and one per step


async def test_events_replay_after_an_id(redis: Redis) -> None:
    store = TaskStore(redis)
    await store.create(TaskRecord(id="t1", input="x"))
    for state in ("working", "completed"):
        await store.update("t1", lambda t, s=state: _set_state(t, s))  # type: ignore[misc]
    events = await store.events("t1")
    assert [e.state for _, e in events] == ["submitted", "working", "completed"]
    first_id = events[0][0]
    assert [e.state for _, e in await store.events("t1", after=first_id)] == [
        "working",
        "completed",
    ]


async def test_a_state_set_beside_the_document_wins(redis: Redis) -> None:
    store = TaskStore(redis)
    await store.create(TaskRecord(id="t1", input="x", state="working"))
    await redis.hset(names.task_key("t1"), mapping={"state": "failed", "reason": "dead letter"})
    task = await store.get("t1")
    assert task.state == "failed" and task.reason == "dead letter"


def _set_state(task: TaskRecord, state: str) -> list[TaskEvent]:
    task.state = state  # type: ignore[assignment]
    return [TaskEvent(kind="state", state=task.state)]


def test_the_lifecycle_moves_a_task_one_way_whoever_calls_it() -> None:
    from swarm.messages import StepResult

    task = TaskRecord(id="t", input="x")
    plan = [StepRecord(id="a", specialist="pii"), StepRecord(id="b", specialist="entities",
                                                             depends_on=["a"])]  # fmt: skip
    assert [e.state for e in task.begin(plan, "explicit")] == ["working"]
    assert task.begin(plan, "explicit") == []  # planned already: nothing more
    started = task.start_step(task.step("a"), {"text": "x"})
    assert started.kind == "step.started" and task.step("a").started_at is not None
    done = StepResult(step_id="a", specialist="pii", output={"redacted_text": "x", "spans": []},
                      valid=True)  # fmt: skip
    assert [e.kind for e in task.record(done) or []] == ["step.completed"]
    assert task.record(done) is None  # a duplicate answers nothing
    task.start_step(task.step("b"), {"text": "x"})
    # Canceled mid-step: the running step is cut off with its end time, as anyone cancels.
    events = task.end("canceled", "no longer needed")
    assert events and events[0].state == "canceled" and task.reason == "no longer needed"
    assert task.step("b").status == "canceled" and task.step("b").finished_at is not None
    assert task.end("failed", "late") is None and task.state == "canceled"


def test_a_failed_step_ends_the_task_and_skips_what_waited_on_it() -> None:
    from swarm.messages import StepResult

    task = TaskRecord(id="t", input="x")
    task.begin([StepRecord(id="a", specialist="sql"),
                StepRecord(id="b", specialist="pii", depends_on=["a"])], None)  # fmt: skip
    task.start_step(task.step("a"), {})
    bad = StepResult(step_id="a", specialist="sql", output=None, valid=False, error="no such table")
    kinds = [(e.kind, e.state) for e in task.record(bad) or []]
    assert kinds == [("step.failed", None), ("state", "failed")]
    assert task.reason == "step 'a' (sql) failed: no such table"
    assert task.step("b").status == "skipped"
