"""Task state: the record of one task and its steps, stored in Redis, served over HTTP.

A task's record is one JSON document in the hash ``names.task_key(task_id)`` (field ``doc``),
next to ``state`` and ``reason`` fields that anyone may set to end a task (the bus does, when it
dead-letters a task's message). Every change is also appended to the task's event stream
``names.task_events_stream(task_id)``, whose entry ids are the SSE event ids, so a client that
reconnects with ``Last-Event-ID`` replays exactly what it missed.

Writers update a record with optimistic concurrency (``WATCH``/``MULTI``), so any number of
orchestrators and API replicas may touch the same task.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator
from redis.asyncio import Redis
from redis.exceptions import WatchError

from swarm import names
from swarm.messages import Envelope, StepSpec, TaskEvent, TaskState, TokenUsage, envelope, utcnow

TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "canceled", "rejected"})
StepStatus = Literal["pending", "running", "completed", "failed", "canceled", "skipped"]
EVENT_FIELD = "m"
MAX_UPDATE_TRIES = 50


class StepRecord(BaseModel):
    """One step of a task, as the API shows it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    specialist: str
    depends_on: list[str] = Field(default_factory=list)
    status: StepStatus = "pending"
    input: Any = None
    output: Any = None
    error: str | None = None
    adapter: str | None = None
    adapter_version: str | None = None
    latency_ms: float | None = None
    tokens: TokenUsage = Field(default_factory=TokenUsage)
    attempts: int = 0
    escalated: bool = False
    escalation_reason: str | None = None
    cost_usd: float = 0.0
    all_teacher_cost_usd: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def spec(self) -> StepSpec:
        return StepSpec(id=self.id, specialist=self.specialist, depends_on=self.depends_on)


class TaskCost(BaseModel):
    """A task's cost: local GPU time plus teacher calls, beside the all-teacher estimate."""

    cost_usd: float
    all_teacher_cost_usd: float
    saved_usd: float
    prompt_tokens: int
    completion_tokens: int
    escalated_steps: int


class TaskRecord(BaseModel):
    """A task: its input, plan, per-step progress and final result."""

    model_config = ConfigDict(extra="forbid")

    id: str
    state: TaskState = "submitted"
    input: str | dict[str, Any]
    goal: str | None = None
    plan_source: Literal["explicit", "planner", "rules"] | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    result: Any = None
    reason: str | None = None
    owner: str | None = Field(None, description="Hash of the creating API key; never shown.")
    idempotency_key: str | None = None
    deadline: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # ``cost`` is computed from the steps; a stored or echoed copy is not an input.
        if isinstance(data, dict) and "cost" in data:
            data = {k: v for k, v in data.items() if k != "cost"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cost(self) -> TaskCost:
        """Totals over the steps: what the task cost, and what all-teacher would have."""
        spent = sum(s.cost_usd for s in self.steps)
        counterfactual = sum(s.all_teacher_cost_usd for s in self.steps)
        return TaskCost(
            cost_usd=round(spent, 8),
            all_teacher_cost_usd=round(counterfactual, 8),
            saved_usd=round(counterfactual - spent, 8),
            prompt_tokens=sum(s.tokens.prompt for s in self.steps),
            completion_tokens=sum(s.tokens.completion for s in self.steps),
            escalated_steps=sum(1 for s in self.steps if s.escalated),
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def step(self, step_id: str) -> StepRecord:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


class TaskNotFound(LookupError):
    """No task with that id (or not visible to this caller)."""


class TaskStore:
    """Reads and writes task records and their event logs."""

    def __init__(self, redis: Redis, *, ttl_s: int = 7 * 86_400, events_maxlen: int = 10_000):
        self.redis = redis
        self.ttl_s = ttl_s
        self.events_maxlen = events_maxlen

    async def create(self, task: TaskRecord, event: TaskEvent | None = None) -> bool:
        """Store a new task; False if a task with that id exists already."""
        key = names.task_key(task.id)
        doc = _dump(task)
        created = await self.redis.hsetnx(key, "doc", doc)
        if not created:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"state": task.state, "updated_at": task.updated_at.isoformat()})
            pipe.expire(key, self.ttl_s)
            self._append(pipe, task.id, event or TaskEvent(kind="state", state=task.state))
            await pipe.execute()
        return True

    async def get(self, task_id: str) -> TaskRecord:
        """The task record, with any terminal state set beside the document applied."""
        raw = await self.redis.hgetall(names.task_key(task_id))
        return _load(task_id, raw)

    async def update(
        self, task_id: str, change: Callable[[TaskRecord], list[TaskEvent] | None]
    ) -> TaskRecord:
        """Apply ``change`` atomically; it edits the record in place and returns events to log.

        ``change`` may be called more than once (on a concurrent write), so it must only look
        at the record it is given. Returning None means nothing changed and nothing is written.
        """
        key = names.task_key(task_id)
        for _ in range(MAX_UPDATE_TRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    task = _load(task_id, await pipe.hgetall(key))
                    events = change(task)
                    if events is None:
                        await pipe.unwatch()
                        return task
                    task.updated_at = utcnow()
                    pipe.multi()
                    pipe.hset(
                        key,
                        mapping={
                            "doc": _dump(task),
                            "state": task.state,
                            "reason": task.reason or "",
                            "updated_at": task.updated_at.isoformat(),
                        },
                    )
                    pipe.expire(key, self.ttl_s)
                    for event in events:
                        self._append(pipe, task_id, event)
                    await pipe.execute()
                    return task
                except WatchError:
                    continue
        raise RuntimeError(f"task {task_id}: too many concurrent updates")

    async def events(
        self, task_id: str, after: str = "0-0", count: int = 1000
    ) -> list[tuple[str, TaskEvent]]:
        """Events logged after the event id ``after``, oldest first."""
        entries: Any = await self.redis.xrange(
            names.task_events_stream(task_id), min=f"({after}", max="+", count=count
        )
        out = []
        for entry_id, fields in entries:
            body = Envelope.decode(fields[EVENT_FIELD.encode()]).body
            if isinstance(body, TaskEvent):
                out.append((_text(entry_id), body))
        return out

    def _append(self, pipe: Any, task_id: str, event: TaskEvent) -> None:
        stream = names.task_events_stream(task_id)
        pipe.xadd(
            stream,
            {EVENT_FIELD: envelope(task_id, event).encode()},
            maxlen=self.events_maxlen,
            approximate=True,
        )
        pipe.expire(stream, self.ttl_s)
        if event.kind == "state" and event.state:
            pipe.hincrby(names.TASK_STATES_KEY, event.state, 1)


def _dump(task: TaskRecord) -> str:
    return task.model_dump_json()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _load(task_id: str, raw: dict[Any, Any]) -> TaskRecord:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    if "doc" not in fields:
        raise TaskNotFound(task_id)
    task = TaskRecord.model_validate_json(fields["doc"])
    # Someone outside the record (the bus's dead-letter path) may have ended the task.
    state = fields.get("state")
    if state in TERMINAL_STATES and not task.terminal:
        task.state = state  # type: ignore[assignment]
        task.reason = fields.get("reason") or task.reason
    return task
