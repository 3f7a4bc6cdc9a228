"""The orchestrator: plans each task and walks it through its specialists.

It consumes task submissions, cancellations and step results from Redis Streams, and keeps every
bit of state in the task record in Redis. Nothing lives only in memory, so any number of
orchestrators can run side by side, and the messages of one that is killed mid-task are
reclaimed by the bus and finished by another. Every handler is idempotent and may be re-run from
the top after a crash at any line:

* each message costs one read of the task record and one atomic write (``TaskStore.update``)
  that records the change, marks the newly ready steps running and sends their requests, so a
  crash leaves either all of it or none of it;
* a submission for a task already planned only (re)dispatches the ready steps;
* a step request has a deterministic message id, so publishing it twice is a no-op;
* a result for a step that is no longer pending or running is ignored, but still triggers
  dispatch of the steps it unblocked.

Bounds: a plan has at most ``max_steps`` steps; each task's deadline is kept in a sorted set
that a sweeper checks every ``sweep_interval_s`` and fails overdue tasks; a plan that can no
longer progress fails at once instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from orchestrator.planner import Planner
from swarm import names
from swarm.bus import Bus, Outgoing
from swarm.catalog import CatalogCache, SpecialistRecord
from swarm.connections import OUTAGE_ERRORS, Outage, RedisClient
from swarm.consumer import Consumer, Delivery, Reject
from swarm.errors import UserError
from swarm.handoff import build_input, input_problem
from swarm.logs import task_context
from swarm.messages import (
    Cancel,
    Envelope,
    StepRequest,
    StepResult,
    TaskEvent,
    TaskState,
    TaskSubmitted,
    utcnow,
)
from swarm.plans import MAX_STEPS, check_plan
from swarm.settings import Settings
from swarm.tasks import StepRecord, TaskNotFound, TaskRecord, TaskStore
from swarm.tracing import current_traceparent, span

log = logging.getLogger(__name__)

SWEEP_BATCH = 100
"""Overdue tasks failed per sweep; the next sweep takes the rest."""
RECENT_RECORDS = 4096
"""Task records an orchestrator keeps from its own writes, to skip the next read of each."""
RECENT_BYTES = 64 * 1024 * 1024
"""The most those records may weigh together (their stored JSON); big tasks are read again."""


def step_request_id(task_id: str, step_id: str) -> str:
    """The same step of the same task always goes out under the same message id."""
    return hashlib.sha256(f"step:{task_id}:{step_id}".encode()).hexdigest()[:32]


class Orchestrator:
    """Runs tasks: planning, dispatching ready steps, collecting results, deadlines, cancel.

    ``max_steps`` bounds every plan (the API applies the same bound from ``swarm.plans``);
    ``sweep_interval_s`` is how often overdue tasks are looked for.
    """

    def __init__(
        self,
        redis: RedisClient,
        settings: Settings,
        planner: Planner,
        *,
        max_steps: int = MAX_STEPS,
        sweep_interval_s: float = 0.5,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.planner = planner
        self.max_steps = max_steps
        self.sweep_interval_s = sweep_interval_s
        self.store = TaskStore(redis)
        self.bus = Bus(redis, settings=settings)
        self.catalog = CatalogCache(redis)
        self._consumer: Consumer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._recent: OrderedDict[str, TaskRecord] = OrderedDict()
        self._recent_bytes = 0

    # Lifecycle

    def start(self) -> None:
        """Start consuming and sweeping in the background; ``close()`` stops both."""
        self._consumer = Consumer.of(
            self.bus,
            [names.TASKS_STREAM, names.RESULTS_STREAM],
            names.ORCHESTRATORS_GROUP,
            self.handle,
        )
        self._consumer.start()
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="orchestrator:sweeper")

    async def close(self) -> None:
        """Stop reading, finish in-flight messages, and stop the sweeper."""
        self._stopping.set()
        if self._consumer is not None:
            await self._consumer.close()
        if self._sweeper is not None:
            await self._sweeper

    async def run(self) -> None:
        """Run until ``stop()``, then shut down gracefully."""
        self.start()
        await self._stopping.wait()
        await self.close()

    def stop(self) -> None:
        """Ask ``run()`` to return (safe to call from a signal handler)."""
        self._stopping.set()

    # Messages

    async def handle(self, delivery: Delivery) -> None:
        """Bus handler for the tasks and results streams."""
        message = delivery.envelope
        body = message.body
        with (
            task_context(message.task_id),
            span(
                f"orchestrator {body.type}",
                {"swarm.task_id": message.task_id},
                parent=message.traceparent,
            ),  # fmt: skip
        ):
            await self._handle(message)

    async def _handle(self, message: Envelope) -> None:
        body = message.body
        try:
            if isinstance(body, TaskSubmitted):
                await self._on_submitted(message)
            elif isinstance(body, StepResult):
                await self._on_result(message, body)
            elif isinstance(body, Cancel):
                await self._on_cancel(message.task_id, body.reason)
            else:
                raise Reject(f"orchestrators do not take {body.type} messages")
        except TaskNotFound as exc:
            if isinstance(body, TaskSubmitted):
                # The API stores the record before it publishes: this is not from the API.
                raise Reject(f"no task record for submitted task {exc}") from exc
            # A result or cancel for a task that expired: nothing is waiting for it.
            log.info("dropping %s for unknown task %s", body.type, message.task_id)

    async def _on_submitted(self, message: Envelope) -> None:
        task_id = message.task_id
        task = await self.store.get(task_id)
        if task.state == "working":
            # Planned by an earlier delivery; sends whatever is ready and not yet sent.
            await self._commit(task, message, lambda record: [], await self._plan_catalog(task))
            return
        if task.state != "submitted":
            return  # finished or canceled meanwhile
        if task.deadline is not None:
            await self.redis.zadd(names.DEADLINES_KEY, {task_id: task.deadline.timestamp()})
        steps = task.steps
        source = task.plan_source
        submitted = message.body
        if not steps and isinstance(submitted, TaskSubmitted) and submitted.plan:
            # The record is the source of truth, but a producer that only sent the plan on the
            # wire still meant it: an explicit plan never goes to a planner.
            steps = [StepRecord(**s.model_dump()) for s in submitted.plan]
            source = "explicit"
        try:
            if not steps:
                catalog = await self._catalog(())
                specs, source = await self.planner.plan(
                    task.goal or "", task.input, list(catalog.values())
                )
                steps = [
                    StepRecord(id=s.id, specialist=s.specialist, depends_on=s.depends_on)
                    for s in specs
                ]
            specs = [s.spec() for s in steps]
            # Explicit plans were checked by the API, but the catalog may have changed since,
            # and a planner's plan has not been checked by anyone.
            catalog = await self._catalog(s.specialist for s in specs)
            check_plan(specs, catalog, max_steps=self.max_steps)
        except UserError as exc:
            await self._end(task_id, "rejected", str(exc))
            return

        def begin(record: TaskRecord) -> list[TaskEvent]:
            return record.begin(steps, source)  # nothing if a concurrent delivery planned it

        task = await self._commit(task, message, begin, catalog)
        log.info(
            "task %s planned (%s): %s",
            task_id,
            task.plan_source,
            [s.specialist for s in task.steps],
        )

    async def _catalog(self, wanted: Iterable[str]) -> dict[str, SpecialistRecord]:
        """The catalog, read fresh if the cached copy lacks a specialist we need."""
        catalog = await self.catalog.all()
        if any(name not in catalog for name in wanted):
            # Registered within the cache's TTL (the API saw it already): look again.
            catalog = await self.catalog.current()
        return catalog

    async def _plan_catalog(self, task: TaskRecord) -> dict[str, SpecialistRecord]:
        return await self._catalog(s.specialist for s in task.steps)

    async def _commit(
        self,
        task: TaskRecord,
        cause: Envelope,
        change: Callable[[TaskRecord], list[TaskEvent] | None],
        catalog: dict[str, SpecialistRecord],
    ) -> TaskRecord:
        """Apply ``change``, then dispatch every step it made ready, in one atomic write.

        The step requests go out in the same write that marks their steps running (and before
        it), so a crash can never leave a step running that was not sent, nor send a step twice
        (its request id is fixed). A redelivered message runs this again harmlessly.
        """
        outbox: list[Outgoing] = []

        def apply(record: TaskRecord) -> list[TaskEvent] | None:
            events = change(record)
            if events is None:
                return None
            if not record.terminal:
                events += self._dispatch(record, cause, catalog, outbox)
            return events or None

        task = await self.store.update(task.id, apply, current=task, outbox=outbox)
        if task.terminal:
            await self._after_end(task.id, task.state, task.reason)
        else:
            self._remember(task)
        return task

    async def _read(self, task_id: str) -> TaskRecord:
        """The task record: the copy this process last wrote, if it has one, else Redis's.

        A copy saves the read on the next message of the same task. It is safe because a write
        checks that nobody wrote the record since the copy was taken, and reads it again if
        someone did (another orchestrator, the API, the bus); the copy is handed out once, so two
        handlers never change the same object.
        """
        task = self._forget(task_id)
        return task if task is not None else await self.store.get(task_id)

    def _remember(self, task: TaskRecord) -> None:
        self._forget(task.id)
        if task.stored_bytes > RECENT_BYTES // 16:
            return
        self._recent[task.id] = task
        self._recent_bytes += task.stored_bytes
        while len(self._recent) > RECENT_RECORDS or self._recent_bytes > RECENT_BYTES:
            _, oldest = self._recent.popitem(last=False)
            self._recent_bytes -= oldest.stored_bytes

    def _forget(self, task_id: str) -> TaskRecord | None:
        task = self._recent.pop(task_id, None)
        if task is not None:
            self._recent_bytes -= task.stored_bytes
        return task

    def _dispatch(
        self,
        task: TaskRecord,
        cause: Envelope,
        catalog: dict[str, SpecialistRecord],
        outbox: list[Outgoing],
    ) -> list[TaskEvent]:
        """Mark every step whose dependencies are done running, and queue its request.

        A step that cannot be sent (its specialist is gone, or its input does not fit) fails
        the task instead, and nothing is sent.
        """
        done = {s.id: s for s in task.steps if s.status == "completed"}
        ready = [
            s for s in task.steps if s.status == "pending" and all(d in done for d in s.depends_on)
        ]
        if not ready:
            if not any(s.status == "running" for s in task.steps) and len(done) < len(task.steps):
                return task.fail("the plan cannot progress: no step can run")
            return []
        inputs: dict[str, dict[str, Any]] = {}
        for step in ready:
            target = catalog.get(step.specialist)
            if target is None or not target.ready:
                reason = f"step {step.id!r}: specialist {step.specialist!r} is no longer available"
                return task.fail(reason, step)
            producers = [
                (catalog[done[d].specialist], done[d].output)
                for d in step.depends_on
                if done[d].specialist in catalog
            ]
            step_input = build_input(task.input, target, producers)
            problem = input_problem(step.id, target, step_input)
            if problem:
                return task.fail(problem, step, step_input)
            inputs[step.id] = step_input
        events = []
        traceparent = current_traceparent() or cause.traceparent
        for step in ready:
            request = StepRequest(
                step=step.spec(),
                input=inputs[step.id],  # built from the task input and the artifacts: no copy
                deadline=task.deadline,
            )
            message = Envelope(
                id=step_request_id(task.id, step.id),
                task_id=task.id,
                trace_id=cause.trace_id,
                traceparent=traceparent,
                body=request,
            )
            outbox.append(self.bus.outgoing(names.steps_stream(step.specialist), message))
            events.append(task.start_step(step, inputs[step.id]))
        return events

    async def _on_result(self, message: Envelope, result: StepResult) -> None:
        task = await self._read(message.task_id)
        if task.terminal:
            # Late, or a redelivery after the task ended: make sure its end was acted on.
            await self._after_end(task.id, task.state, task.reason)
            return

        def record(task: TaskRecord) -> list[TaskEvent]:
            # Not an answer to a step we wait for (a duplicate, say): still dispatch what it
            # unblocked, since an earlier run may have died before the write that would have.
            return task.record(result) or []

        await self._commit(task, message, record, await self._plan_catalog(task))

    async def _on_cancel(self, task_id: str, reason: str) -> None:
        await self._end(task_id, "canceled", reason)

    async def _end(self, task_id: str, state: TaskState, reason: str) -> None:
        """Move a task to a terminal state (unless it is in one) and stop its workers."""
        changed = False

        def end(task: TaskRecord) -> list[TaskEvent] | None:
            nonlocal changed
            events = task.end(state, reason)
            changed = events is not None
            return events

        task = await self.store.update(task_id, end)
        if changed:
            log.info("task %s %s: %s", task_id, state, reason)
        await self._after_end(task_id, task.state, task.reason)

    async def _after_end(self, task_id: str, state: str, reason: str | None) -> None:
        """Forget the deadline of an ended task; tell workers to drop any step still running."""
        self._forget(task_id)
        dropped = state in ("failed", "canceled")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(names.DEADLINES_KEY, task_id)
            if dropped:
                # Workers check the marker before and during a step (the API cancels so too).
                pipe.set(names.canceled_key(task_id), b"1", ex=names.CANCELED_TTL_S)
            await pipe.execute()

    # Deadlines

    async def _sweep_loop(self) -> None:
        outage = Outage("deadline sweep")
        while not self._stopping.is_set():
            try:
                await self.sweep()
                outage.over()
            except OUTAGE_ERRORS as exc:
                await outage.wait(exc)
                continue
            except Exception:
                # A Redis hiccup must not end the sweeper; the next sweep tries again.
                log.exception("deadline sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.sweep_interval_s)

    async def sweep(self) -> int:
        """Fail every task past its deadline (up to ``SWEEP_BATCH``); returns how many."""
        overdue = await self.redis.zrangebyscore(
            names.DEADLINES_KEY, 0, time.time(), start=0, num=SWEEP_BATCH
        )
        for raw in overdue:
            task_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                task = await self.store.get(task_id)
            except TaskNotFound:
                await self.redis.zrem(names.DEADLINES_KEY, task_id)
                continue
            budget = (
                (task.deadline - task.created_at).total_seconds()
                if task.deadline
                else (utcnow() - task.created_at).total_seconds()
            )
            await self._end(task_id, "failed", f"deadline exceeded after {budget:.1f}s")
        # Accepted tasks are never trimmed at publish; here, only those every group is done with.
        await self.bus.trim_read(names.TASKS_STREAM)
        return len(overdue)


async def run_orchestrator(settings: Settings) -> None:
    """``swarm orchestrator``: run until SIGINT or SIGTERM, then finish in-flight work.

    Plans goals with the served base model through :class:`~orchestrator.planner.ModelPlanner`,
    falling back to the manifest rules when the model is unreachable or unhelpful.
    """
    from orchestrator.planner import ModelPlanner
    from swarm.connections import connect_when_up
    from swarm.eventloop import run_service
    from swarm.serving.basemodel import served_base_name
    from swarm.serving.modelclient import ModelClient

    redis = await connect_when_up(
        settings.redis_url, "orchestrator", max_connections=settings.redis_max_connections
    )
    # One quick retry: a planner that waits long on a model server holds up the task, and the
    # rule planner is always there to fall back on.
    client = ModelClient(settings, retries=1, timeout_s=30)
    planner = ModelPlanner(client, served_base_name(settings))
    orchestrator = Orchestrator(redis, settings, planner)
    log.info("orchestrator running (planner on %s)", planner.base_model)
    await run_service(orchestrator, client, redis)
