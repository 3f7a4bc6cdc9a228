"""The orchestrator: plans each task and walks it through its specialists.

It consumes task submissions, cancellations and step results from Redis Streams, and keeps every
bit of state in the task record in Redis. Nothing lives only in memory, so any number of
orchestrators can run side by side, and the messages of one that is killed mid-task are
reclaimed by the bus and finished by another. Every handler is idempotent: a step request has a
deterministic message id (publishing it twice is a no-op), and a result for a step that is no
longer waiting is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import Any

from redis.asyncio import Redis

from orchestrator.handoff import build_input, input_problem
from orchestrator.planner import Planner
from swarm import names
from swarm.bus import Bus, Consumer, Delivery, Reject
from swarm.catalog import SpecialistRecord, list_specialists
from swarm.errors import InvalidPlan
from swarm.messages import (
    Cancel,
    Envelope,
    StepRequest,
    StepResult,
    TaskEvent,
    TaskSubmitted,
    utcnow,
)
from swarm.settings import Settings
from swarm.tasks import StepRecord, TaskNotFound, TaskRecord, TaskStore

log = logging.getLogger(__name__)

CANCELED_TTL_S = 86_400


def step_request_id(task_id: str, step_id: str) -> str:
    """The same step of the same task always goes out under the same message id."""
    return hashlib.sha256(f"step:{task_id}:{step_id}".encode()).hexdigest()[:32]


def sinks(task: TaskRecord) -> list[StepRecord]:
    """Steps no other step depends on: their outputs are the task's result."""
    needed = {dep for step in task.steps for dep in step.depends_on}
    return [step for step in task.steps if step.id not in needed]


class Orchestrator:
    """Runs tasks: planning, dispatching ready steps, collecting results, deadlines, cancel."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        planner: Planner,
        *,
        max_steps: int = 16,
        sweep_interval_s: float = 0.5,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.planner = planner
        self.max_steps = max_steps
        self.sweep_interval_s = sweep_interval_s
        self.store = TaskStore(redis)
        self.bus = Bus(redis, settings=settings)
        self._consumer: Consumer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # Lifecycle

    def start(self) -> None:
        self._consumer = self.bus.consumer(
            [names.TASKS_STREAM, names.RESULTS_STREAM], names.ORCHESTRATORS_GROUP, self.handle
        )
        self._consumer.start()
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def close(self) -> None:
        self._stopping.set()
        if self._consumer is not None:
            await self._consumer.close()
        if self._sweeper is not None:
            await self._sweeper

    async def run(self) -> None:
        """Run until ``stop()``."""
        self.start()
        await self._stopping.wait()
        await self.close()

    def stop(self) -> None:
        self._stopping.set()

    # Messages

    async def handle(self, delivery: Delivery) -> None:
        message = delivery.envelope
        body = message.body
        try:
            if isinstance(body, TaskSubmitted):
                await self._on_submitted(message.task_id, body)
            elif isinstance(body, StepResult):
                await self._on_result(message.task_id, body)
            elif isinstance(body, Cancel):
                await self._on_cancel(message.task_id, body.reason)
            else:
                raise Reject(f"orchestrators do not take {body.type} messages")
        except TaskNotFound as exc:
            raise Reject(f"no task {exc}") from exc

    async def _on_submitted(self, task_id: str, submitted: TaskSubmitted) -> None:
        task = await self.store.get(task_id)
        if task.state != "submitted":
            return  # already planned by an earlier delivery, or canceled meanwhile
        catalog = {r.name: r for r in await list_specialists(self.redis)}
        steps = task.steps
        source = task.plan_source
        if not steps:
            try:
                specs, source = await self.planner.plan(
                    task.goal or "", task.input, list(catalog.values())
                )
            except InvalidPlan as exc:
                await self._end(task_id, "rejected", str(exc))
                return
            steps = [
                StepRecord(id=s.id, specialist=s.specialist, depends_on=s.depends_on) for s in specs
            ]
        problem = self._plan_problem(steps, catalog)
        if problem:
            await self._end(task_id, "rejected", problem)
            return
        if task.deadline is not None:
            await self.redis.zadd(names.DEADLINES_KEY, {task_id: task.deadline.timestamp()})

        def begin(record: TaskRecord) -> list[TaskEvent] | None:
            if record.state != "submitted":
                return None
            record.steps = steps
            record.plan_source = source
            record.state = "working"
            plan = [s.model_dump(include={"id", "specialist", "depends_on"}) for s in steps]
            return [
                TaskEvent(
                    kind="state", state="working", detail={"plan": plan, "plan_source": source}
                )
            ]

        await self.store.update(task_id, begin)
        await self._dispatch(task_id)

    def _plan_problem(
        self, steps: list[StepRecord], catalog: dict[str, SpecialistRecord]
    ) -> str | None:
        if len(steps) > self.max_steps:
            return f"the plan has {len(steps)} steps; at most {self.max_steps} are allowed"
        for step in steps:
            record = catalog.get(step.specialist)
            if record is None:
                return f"step {step.id!r}: specialist {step.specialist!r} is not registered"
            if not record.ready:
                return (
                    f"step {step.id!r}: specialist {step.specialist!r} was rejected: "
                    f"{record.reason}"
                )
        return None

    async def _dispatch(self, task_id: str) -> None:
        """Send every step whose dependencies are done, then mark them running."""
        task = await self.store.get(task_id)
        if task.state != "working":
            return
        done = {s.id: s for s in task.steps if s.status == "completed"}
        ready = [
            s for s in task.steps if s.status == "pending" and all(d in done for d in s.depends_on)
        ]
        if not ready:
            return
        catalog = {r.name: r for r in await list_specialists(self.redis)}
        inputs: dict[str, dict[str, Any]] = {}
        for step in ready:
            target = catalog.get(step.specialist)
            if target is None or not target.ready:
                await self._end(
                    task_id,
                    "failed",
                    f"step {step.id!r}: specialist {step.specialist!r} is no longer available",
                )
                return
            producers = [
                (catalog[done[d].specialist], done[d].output)
                for d in step.depends_on
                if done[d].specialist in catalog
            ]
            step_input = build_input(task.input, target, producers)
            problem = input_problem(step_input, target)
            if problem:
                await self._end(
                    task_id,
                    "failed",
                    f"step {step.id!r} ({step.specialist}) {problem}; add it to the task input",
                )
                return
            inputs[step.id] = step_input
            request = StepRequest(
                step=step.spec(),
                input=step_input,
                task_input=task.input,
                artifacts={d: done[d].output for d in step.depends_on},
                deadline=task.deadline,
            )
            await self.bus.publish(
                names.steps_stream(step.specialist),
                Envelope(id=step_request_id(task_id, step.id), task_id=task_id, body=request),
            )

        def mark_running(record: TaskRecord) -> list[TaskEvent] | None:
            events = []
            for step in record.steps:
                if step.id in inputs and step.status == "pending":
                    step.status = "running"
                    step.input = inputs[step.id]
                    step.started_at = utcnow()
                    events.append(
                        TaskEvent(
                            kind="step.started",
                            step_id=step.id,
                            detail={"specialist": step.specialist},
                        )
                    )
            return events or None

        await self.store.update(task_id, mark_running)

    async def _on_result(self, task_id: str, result: StepResult) -> None:
        def record_result(task: TaskRecord) -> list[TaskEvent] | None:
            if task.terminal:
                return None
            try:
                step = task.step(result.step_id)
            except KeyError:
                return None
            if step.status not in ("pending", "running"):
                return None  # a duplicate result
            step.output = result.output
            step.error = result.error
            step.adapter = result.adapter
            step.adapter_version = result.adapter_version
            step.latency_ms = result.latency_ms
            step.tokens = result.tokens
            step.attempts = result.attempts
            step.escalated = result.escalated
            step.escalation_reason = result.escalation_reason
            step.cost_usd = result.cost_usd
            step.finished_at = utcnow()
            detail = {"specialist": step.specialist, "latency_ms": result.latency_ms}
            if not result.valid:
                step.status = "failed"
                task.state = "failed"
                task.reason = f"step {step.id!r} ({step.specialist}) failed: {result.error}"
                for other in task.steps:
                    if other.status == "pending":
                        other.status = "skipped"
                return [
                    TaskEvent(
                        kind="step.failed", step_id=step.id, detail=detail, reason=result.error
                    ),
                    TaskEvent(kind="state", state="failed", reason=task.reason),
                ]
            step.status = "completed"
            events = [
                TaskEvent(
                    kind="step.completed",
                    step_id=step.id,
                    detail={**detail, "output": result.output},
                )
            ]
            if all(s.status == "completed" for s in task.steps):
                outputs = sinks(task)
                task.result = (
                    outputs[0].output if len(outputs) == 1 else {s.id: s.output for s in outputs}
                )
                task.state = "completed"
                events.append(
                    TaskEvent(kind="state", state="completed", detail={"result": task.result})
                )
            return events

        task = await self.store.update(task_id, record_result)
        if task.terminal:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(names.DEADLINES_KEY, task_id)
                if task.state == "failed":  # stop steps still running in parallel
                    pipe.set(names.canceled_key(task_id), b"1", ex=CANCELED_TTL_S)
                await pipe.execute()
        else:
            await self._dispatch(task_id)

    async def _on_cancel(self, task_id: str, reason: str) -> None:
        await self._end(task_id, "canceled", reason)

    async def _end(self, task_id: str, state: str, reason: str) -> None:
        """Move a task to a terminal state (if it is not in one) and stop its workers."""

        def end(task: TaskRecord) -> list[TaskEvent] | None:
            if task.terminal:
                return None
            task.state = state  # type: ignore[assignment]
            task.reason = reason
            for step in task.steps:
                if step.status in ("pending", "running"):
                    step.status = "canceled" if state in ("canceled", "failed") else "skipped"
            return [TaskEvent(kind="state", state=task.state, reason=reason)]

        await self.store.update(task_id, end)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(names.DEADLINES_KEY, task_id)
            if state in ("canceled", "failed"):
                pipe.set(names.canceled_key(task_id), b"1", ex=CANCELED_TTL_S)
            await pipe.execute()

    # Deadlines

    async def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except Exception:
                log.exception("deadline sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.sweep_interval_s)

    async def sweep(self) -> int:
        """Fail every task past its deadline; returns how many."""
        now = time.time()
        overdue = await self.redis.zrangebyscore(names.DEADLINES_KEY, 0, now, start=0, num=100)
        for raw in overdue:
            task_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            with contextlib.suppress(TaskNotFound):
                task = await self.store.get(task_id)
                waited = (utcnow() - task.created_at).total_seconds()
                await self._end(task_id, "failed", f"deadline exceeded after {waited:.1f}s")
            await self.redis.zrem(names.DEADLINES_KEY, task_id)
        return len(overdue)


async def run_orchestrator(settings: Settings) -> None:
    """``swarm orchestrator``: run until SIGINT or SIGTERM, then finish in-flight work."""
    import signal

    from orchestrator.planner import ModelPlanner
    from swarm.basemodel import served_base_name
    from swarm.bus import connect
    from swarm.modelclient import ModelClient

    redis = await connect(settings.redis_url)
    client = ModelClient(settings, retries=1, timeout_s=30)
    orchestrator = Orchestrator(redis, settings, ModelPlanner(client, served_base_name(settings)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, orchestrator.stop)
    try:
        await orchestrator.run()
    finally:
        await client.aclose()
        await redis.aclose()
