"""Driving orchestrators by hand over the real bus.

The :class:`Driver` plays the other components' parts with their real wire messages: it stores
a task and publishes ``TaskSubmitted`` as the API does, reads the ``StepRequest`` s that the
orchestrator sends to a specialist's stream, and answers with ``StepResult`` s as a worker does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from orchestrator.runner import Orchestrator
from swarm import names
from swarm.bus import Bus
from swarm.catalog import SpecialistRecord, put_specialist
from swarm.messages import (
    Cancel,
    Envelope,
    StepRequest,
    StepResult,
    StepSpec,
    TaskEvent,
    TaskSubmitted,
    envelope,
    new_id,
    utcnow,
)
from swarm.settings import Settings
from swarm.tasks import StepRecord, TaskRecord, TaskStore

from adapterfactory import manifest_of
from redisfixture import TEST_REDIS_URL

SETTINGS = Settings(redis_url=TEST_REDIS_URL, heartbeat_timeout_s=1.5, max_deliveries=5)


def spec_record(
    name: str,
    inputs: list[str],
    outputs: list[str],
    *,
    handoff: dict[str, str] | None = None,
    keywords: list[str] | None = None,
) -> SpecialistRecord:
    """A ready specialist taking and producing string fields."""

    def schema(fields: list[str]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {f: {"type": "string", "minLength": 1} for f in fields},
            "required": fields,
        }

    return SpecialistRecord(
        name=name,
        version="1.0.0",
        status="ready",
        description=f"The {name} specialist.",
        manifest=manifest_of(
            name,
            input_schema=schema(inputs),
            output_schema=schema(outputs),
            keywords=keywords or [],
            handoff=handoff or {},
        ),
    )


PII = spec_record(
    "pii", ["text"], ["redacted_text"], handoff={"text": "redacted_text"}, keywords=["redact"]
)
ENTITIES = spec_record("entities", ["text"], ["entities"], keywords=["extract"])
SQL = spec_record("sql", ["question", "schema"], ["sql"], keywords=["query"])


class Driver:
    """Submits tasks, reads step requests and answers them, over the real bus."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.bus = Bus(redis, settings=SETTINGS)
        self.store = TaskStore(redis)

    async def register(self, *records: SpecialistRecord) -> None:
        for record in records:
            await put_specialist(self.redis, record)

    async def submit(
        self,
        task_input: str | dict[str, Any],
        plan: list[StepSpec] | None = None,
        *,
        goal: str | None = None,
        deadline_s: float | None = None,
    ) -> str:
        """What the API does on POST /v1/tasks."""
        task_id = new_id()
        deadline = utcnow() + timedelta(seconds=deadline_s) if deadline_s else None
        await self.store.create(
            TaskRecord(
                id=task_id,
                input=task_input,
                goal=goal,
                steps=[StepRecord(**s.model_dump()) for s in plan or []],
                plan_source="explicit" if plan else None,
                deadline=deadline,
            )
        )
        body = TaskSubmitted(input=task_input, plan=plan, goal=goal, deadline=deadline)
        await self.bus.publish(names.TASKS_STREAM, envelope(task_id, body))
        return task_id

    async def cancel(self, task_id: str) -> None:
        """What the API does on DELETE /v1/tasks/{id}."""

        def cancel(task: TaskRecord) -> list[TaskEvent] | None:
            if task.terminal:
                return None
            task.state = "canceled"
            task.reason = "canceled by request"
            for step in task.steps:
                if step.status in ("pending", "running"):
                    step.status = "canceled"
            return [TaskEvent(kind="state", state="canceled", reason=task.reason)]

        await self.store.update(task_id, cancel)
        await self.redis.set(names.canceled_key(task_id), b"1", ex=86_400)
        await self.bus.publish(names.TASKS_STREAM, envelope(task_id, Cancel()))

    async def requests(self, specialist: str, task_id: str | None = None) -> list[Envelope]:
        """Every step request sent to a specialist so far (for one task, if given)."""
        entries: Any = await self.redis.xrange(names.steps_stream(specialist))
        out = [Envelope.decode(fields[b"m"]) for _, fields in entries]
        return [e for e in out if task_id is None or e.task_id == task_id]

    async def wait_requests(
        self, specialist: str, task_id: str, count: int = 1, timeout_s: float = 10
    ) -> list[StepRequest]:
        """Wait until ``count`` step requests for the task reached the specialist."""
        found: list[Envelope] = []

        async def enough() -> bool:
            nonlocal found
            found = await self.requests(specialist, task_id)
            return len(found) >= count

        await wait_for(enough, timeout_s, f"{count} {specialist} request(s) for {task_id}")
        bodies = [e.body for e in found]
        assert all(isinstance(b, StepRequest) for b in bodies)
        return [b for b in bodies if isinstance(b, StepRequest)]

    async def answer(
        self,
        task_id: str,
        step_id: str,
        specialist: str,
        output: Any = None,
        *,
        error: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """What a worker does when it finishes a step (valid unless ``error`` is given)."""
        result = StepResult(
            step_id=step_id,
            specialist=specialist,
            output=output,
            valid=error is None,
            error=error,
            latency_ms=12.5,
            attempts=1,
        )
        await self.bus.publish(
            names.RESULTS_STREAM,
            Envelope(id=message_id or new_id(), task_id=task_id, body=result),
        )

    async def task(self, task_id: str) -> TaskRecord:
        return await self.store.get(task_id)

    async def finished(self, task_id: str, timeout_s: float = 15) -> TaskRecord:
        async def ended() -> bool:
            return (await self.store.get(task_id)).terminal

        await wait_for(ended, timeout_s, f"task {task_id} to end")
        return await self.store.get(task_id)

    async def events(self, task_id: str) -> list[TaskEvent]:
        return [e for _, e in await self.store.events(task_id)]


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def settled(redis: Redis) -> None:
    """Wait until the orchestrators have handled everything published so far."""

    async def idle() -> bool:
        for stream in (names.TASKS_STREAM, names.RESULTS_STREAM):
            try:
                groups: Any = await redis.xinfo_groups(stream)
            except ResponseError:
                return False  # the orchestrators have not created their groups yet
            group = [g for g in groups if g["name"] == names.ORCHESTRATORS_GROUP.encode()]
            if not group or group[0]["pending"] or group[0]["lag"]:
                return False
        return True

    await wait_for(idle, 10, "the orchestrators to settle")


Start = Callable[..., Orchestrator]
"""The ``start_orchestrator`` fixture: starts an orchestrator (planner and options optional)."""
