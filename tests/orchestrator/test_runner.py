"""The orchestrator with real workers over real Redis; the model server is a scripted stub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from orchestrator.planner import ModelPlanner, Planner, RulePlanner
from orchestrator.runner import Orchestrator
from specialists.builtin import BUILTINS
from specialists.worker import Worker
from swarm import names
from swarm.bus import Bus
from swarm.messages import StepSpec, TaskSubmitted, envelope, new_id, utcnow
from swarm.serving.modelclient import ModelClient, requested_schema
from swarm.settings import Settings
from swarm.tasks import StepRecord, TaskRecord, TaskStore

from adapterfactory import register_builtins
from conftest import free_port
from openaistub import Stub, completion, openai_stub

TEXT = "Maria Lopez of Acme Corp emailed maria@example.com from Berlin."
REDACTED = "[PERSON] of Acme Corp emailed [EMAIL] from Berlin."
OUTPUTS = {
    "pii": {
        "redacted_text": REDACTED,
        "spans": [
            {"text": "Maria Lopez", "type": "PERSON"},
            {"text": "maria@example.com", "type": "EMAIL"},
        ],
    },
    "entities": {
        "entities": [
            {"text": "Acme Corp", "type": "ORGANIZATION"},
            {"text": "Berlin", "type": "LOCATION"},
        ]
    },
    "sql": {"sql": "SELECT COUNT(*) FROM customers"},
}
SQL_FIELDS = {"question": "How many customers?", "schema": "CREATE TABLE customers (id INT);"}


def model_reply(body: dict[str, Any]) -> tuple[int, Any]:
    """Answer as the specialist whose system prompt this is."""
    system = body["messages"][0]["content"]
    name = next(n for n, d in BUILTINS.items() if d.manifest.system_prompt == system)
    return 200, completion(json.dumps(OUTPUTS[name]))


@pytest.fixture
def stub() -> Iterator[Stub]:
    with openai_stub(model_reply, free_port()) as server:
        yield server


@asynccontextmanager
async def runtime(
    redis: Redis,
    stub: Stub,
    *,
    orchestrators: int = 1,
    workers: int = 1,
    planner: Planner | None = None,
) -> AsyncIterator[Settings]:
    settings = Settings(vllm_urls=[stub.url], heartbeat_timeout_s=2.0)
    await register_builtins(redis)
    running: list[Any] = []
    clients = []
    for _ in range(orchestrators):
        orchestrator = Orchestrator(redis, settings, planner or RulePlanner(), sweep_interval_s=0.1)
        orchestrator.start()
        running.append(orchestrator)
    worker_tasks = []
    for _ in range(workers):
        client = ModelClient(settings, retries=0)
        clients.append(client)
        worker = Worker(redis, settings, client, base_model="base", catalog_poll_s=0.2)
        worker_tasks.append((worker, asyncio.create_task(worker.run())))
    try:
        yield settings
    finally:
        for worker, task in worker_tasks:
            worker.stop()
            await task
        for orchestrator in running:
            await orchestrator.close()
        for client in clients:
            await client.aclose()


async def submit(
    redis: Redis,
    task_input: str | dict[str, Any],
    plan: list[StepSpec] | None = None,
    goal: str | None = None,
    deadline_s: float | None = None,
) -> str:
    task_id = new_id()
    deadline = utcnow() + timedelta(seconds=deadline_s) if deadline_s else None
    steps = [
        StepRecord(id=s.id, specialist=s.specialist, depends_on=s.depends_on) for s in plan or []
    ]
    await TaskStore(redis).create(
        TaskRecord(
            id=task_id,
            input=task_input,
            goal=goal,
            steps=steps,
            plan_source="explicit" if plan else None,
            deadline=deadline,
        )
    )
    await Bus(redis).publish(
        names.TASKS_STREAM,
        envelope(task_id, TaskSubmitted(input=task_input, plan=plan, goal=goal, deadline=deadline)),
    )
    return task_id


async def finished(redis: Redis, task_id: str, timeout_s: float = 20) -> TaskRecord:
    store = TaskStore(redis)
    for _ in range(int(timeout_s / 0.05)):
        task = await store.get(task_id)
        if task.terminal:
            return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} still {task.state}")


def linear(*specialists: str) -> list[StepSpec]:
    return [
        StepSpec(id=f"s{i}", specialist=s, depends_on=[f"s{i - 1}"] if i > 1 else [])
        for i, s in enumerate(specialists, start=1)
    ]


async def test_three_step_chain_hands_the_redacted_text_on(redis: Redis, stub: Stub) -> None:
    async with runtime(redis, stub):
        task_id = await submit(
            redis, {"text": TEXT, **SQL_FIELDS}, linear("pii", "entities", "sql")
        )
        task = await finished(redis, task_id)
    assert task.state == "completed", task.reason
    assert [s.status for s in task.steps] == ["completed"] * 3
    assert task.steps[0].input == {"text": TEXT}
    assert task.steps[1].input == {"text": REDACTED}  # the typed handoff
    assert task.steps[2].input == SQL_FIELDS
    assert task.result == OUTPUTS["sql"]
    assert all(s.attempts == 1 and s.latency_ms for s in task.steps)
    kinds = [e.kind for _, e in await TaskStore(redis).events(task_id)]
    assert kinds.count("step.started") == 3 and kinds.count("step.completed") == 3
    assert kinds[-1] == "state"


async def test_independent_steps_run_in_parallel(redis: Redis, stub: Stub) -> None:
    plan = [
        StepSpec(id="redact", specialist="pii"),
        StepSpec(id="ents", specialist="entities", depends_on=["redact"]),
        StepSpec(id="query", specialist="sql", depends_on=["redact"]),
    ]
    async with runtime(redis, stub, workers=2):
        task_id = await submit(redis, {"text": TEXT, **SQL_FIELDS}, plan)
        task = await finished(redis, task_id)
    assert task.state == "completed"
    assert task.result == {"ents": OUTPUTS["entities"], "query": OUTPUTS["sql"]}
    events = await TaskStore(redis).events(task_id)
    started = [e.step_id for _, e in events if e.kind == "step.started"]
    completed_first_middle = [e.step_id for _, e in events if e.kind == "step.completed"]
    # Both middle steps were sent before either finished.
    assert started == ["redact", "ents", "query"] or started == ["redact", "query", "ents"]
    assert completed_first_middle[0] == "redact"
    second_wave = [
        i for i, (_, e) in enumerate(events) if e.kind == "step.started" and e.step_id != "redact"
    ]
    first_done = next(
        i for i, (_, e) in enumerate(events) if e.kind == "step.completed" and e.step_id != "redact"
    )
    assert max(second_wave) < first_done


async def test_goal_is_planned_by_rules(redis: Redis, stub: Stub) -> None:
    async with runtime(redis, stub):
        task_id = await submit(redis, TEXT, goal="redact the personal data, then extract entities")
        task = await finished(redis, task_id)
    assert task.plan_source == "rules"
    assert [s.specialist for s in task.steps] == ["pii", "entities"]
    assert task.state == "completed"


async def test_goal_is_planned_by_the_model_over_http(redis: Redis) -> None:
    def reply(body: dict[str, Any]) -> tuple[int, Any]:
        if body["messages"][0]["content"].startswith("You plan tasks"):
            plan = {"steps": ["pii", "entities"]}
            return 200, completion(json.dumps(plan))
        return model_reply(body)

    with openai_stub(reply, free_port()) as stub:
        async with ModelClient(Settings(vllm_urls=[stub.url]), retries=0) as client:
            planner = ModelPlanner(client, "base")
            async with runtime(redis, stub, planner=planner):
                task = await finished(redis, await submit(redis, TEXT, goal="tidy this up"))
        planned = [
            r for r in stub.requests if r["messages"][0]["content"].startswith("You plan tasks")
        ]
    assert (task.state, task.plan_source) == ("completed", "planner")
    assert [s.specialist for s in task.steps] == ["pii", "entities"]
    assert task.steps[1].input == {"text": REDACTED}
    schema = requested_schema(planned[0])
    assert schema["properties"]["steps"]["items"]["enum"] == ["entities", "pii", "sql"]


async def test_unplannable_goal_is_rejected(redis: Redis, stub: Stub) -> None:
    async with runtime(redis, stub):
        task = await finished(redis, await submit(redis, TEXT, goal="paint a picture"))
    assert task.state == "rejected"
    assert "pass an explicit plan" in (task.reason or "")


async def test_missing_input_fails_with_a_clear_reason(redis: Redis, stub: Stub) -> None:
    async with runtime(redis, stub):
        task = await finished(redis, await submit(redis, TEXT, linear("pii", "sql")))
    assert task.state == "failed"
    assert task.reason == (
        "step 's2' (sql) needs input fields 'question' and 'schema'; add them to the task input"
    )


async def test_a_failed_step_fails_the_task(redis: Redis) -> None:
    # An entity without a type: no finish step repairs that, and the schema rejects it.
    bad = {**OUTPUTS, "entities": {"entities": [{"text": "Atlantis"}]}}

    def reply(body: dict[str, Any]) -> tuple[int, Any]:
        system = body["messages"][0]["content"]
        name = next(n for n, d in BUILTINS.items() if d.manifest.system_prompt == system)
        return 200, completion(json.dumps(bad[name]))

    with openai_stub(reply, free_port()) as stub:
        async with runtime(redis, stub):
            task = await finished(redis, await submit(redis, TEXT, linear("pii", "entities")))
    assert task.state == "failed"
    assert task.steps[1].status == "failed" and task.steps[1].attempts == 3
    assert "'type' is a required property" in (task.reason or "")


async def test_deadline_exceeded(redis: Redis) -> None:
    def slow(body: dict[str, Any]) -> tuple[int, Any]:
        import time

        time.sleep(1.0)
        return model_reply(body)

    with openai_stub(slow, free_port()) as stub:
        async with runtime(redis, stub):
            task_id = await submit(redis, TEXT, linear("pii", "entities"), deadline_s=0.5)
            task = await finished(redis, task_id)
    assert task.state == "failed"
    assert "deadline exceeded" in (task.reason or "")
    assert await redis.exists(names.canceled_key(task_id))


async def test_two_orchestrators_complete_each_task_once(redis: Redis, stub: Stub) -> None:
    async with runtime(redis, stub, orchestrators=2, workers=2):
        ids = [await submit(redis, TEXT, linear("pii", "entities")) for _ in range(20)]
        tasks = [await finished(redis, task_id, timeout_s=60) for task_id in ids]
    assert all(t.state == "completed" for t in tasks)
    for task_id in ids:
        events = await TaskStore(redis).events(task_id)
        assert sum(1 for _, e in events if e.state == "completed") == 1
        assert sum(1 for _, e in events if e.kind == "step.completed") == 2
