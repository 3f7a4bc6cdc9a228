"""Task state: the record of one task and its steps, stored in Redis, served over HTTP.

A task's record is one JSON document in the hash ``names.task_key(task_id)`` (field ``doc``),
next to ``state`` and ``reason`` fields that anyone may set to end a task (the bus does, when it
dead-letters a task's message). Every change is also appended to the task's event stream
``names.task_events_stream(task_id)``, whose entry ids are the SSE event ids, so a client that
reconnects with ``Last-Event-ID`` replays exactly what it missed.

Writers update a record with optimistic concurrency, so any number of orchestrators and API
replicas may touch the same task: a writer reads the record, changes it in memory, and writes it
back with one Lua script that first checks nobody wrote in between (the hash's ``rev`` counter,
``state`` and ``updated_at`` fields, which every writer moves), else the writer reads again. The
same script logs the change's events and may publish messages to streams first (an orchestrator
dispatching steps), so a step is never marked running without its request having been sent, and
the whole change costs one read and one write round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, computed_field, model_validator

from swarm import names, scripts
from swarm.connections import RedisClient, text
from swarm.messages import (
    TERMINAL_STATES,
    Envelope,
    StepResult,
    StepSpec,
    TaskEvent,
    TaskState,
    TokenUsage,
    envelope,
    utcnow,
)

if TYPE_CHECKING:
    from swarm.bus import Outgoing

StepStatus = Literal["pending", "running", "completed", "failed", "canceled", "skipped"]
EVENT_FIELD = "m"
MAX_UPDATE_TRIES = 50

# The scripts share two parts. ARGV from ``base``: ttl, events maxlen, then ``n_out`` messages
# to publish (stream, dedupe key, payload, maxlen, dedupe ttl: KEYS/ARGV pairs as laid out by
# ``_script_args``), then ``n_ev`` events (payload, state to count or ''). Publishing is the
# bus's dedupe-then-XADD (``swarm.scripts.PUBLISH``): a message id sent before is skipped.
# Messages go out before the record is written: Redis does not undo a script that fails half
# way, and a record marking steps running whose requests were never sent would hang the task,
# while a request sent for a record not written is sent again, deduplicated, by the retry.
_PUBLISH = """
local ttl, maxlen = ARGV[base], ARGV[base + 1]
local n_out, n_ev = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
local a = base + 4
for i = 1, n_out do
  publish(KEYS[2 + 2 * i], KEYS[3 + 2 * i], ARGV[a], ARGV[a + 1], ARGV[a + 2])
  a = a + 3
end
"""
_LOG = """
for i = 1, n_ev do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'm', ARGV[a])
  if ARGV[a + 1] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[a + 1], 1) end
  a = a + 2
end
if n_ev > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
redis.call('EXPIRE', KEYS[1], ttl)
return 1
"""

# KEYS: task hash, events stream, states counter, then (stream, dedupe key) per message, and
# last the owner's task index. ARGV: doc, state, updated_at, then the shared part, and last the
# task id and its index score. Returns 0 if the task exists already.
_CREATE_SCRIPT = (
    scripts.PUBLISH
    + """
if redis.call('HEXISTS', KEYS[1], 'doc') == 1 then return 0 end
local base = 4
"""
    + _PUBLISH
    + """
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'state', ARGV[2], 'updated_at', ARGV[3], 'rev', 1)
redis.call('ZADD', KEYS[#KEYS], ARGV[#ARGV], ARGV[#ARGV - 1])
redis.call('EXPIRE', KEYS[#KEYS], ttl)
"""
    + _LOG
)

# KEYS as for create. ARGV: the rev, state and updated_at read (or ''), doc, state, reason,
# updated_at, then the shared part. Returns 1 if written, 0 if someone wrote since the read,
# -1 if the task is gone.
_UPDATE_SCRIPT = (
    scripts.PUBLISH
    + """
if redis.call('HEXISTS', KEYS[1], 'doc') == 0 then return -1 end
local seen = redis.call('HMGET', KEYS[1], 'rev', 'state', 'updated_at')
if (seen[1] or '') ~= ARGV[1] or (seen[2] or '') ~= ARGV[2] or (seen[3] or '') ~= ARGV[3] then
  return 0
end
local base = 8
"""
    + _PUBLISH
    + """
redis.call('HSET', KEYS[1], 'doc', ARGV[4], 'state', ARGV[5], 'reason', ARGV[6],
  'updated_at', ARGV[7])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
"""
    + _LOG
)


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
    _seen: tuple[str, str, str] | None = PrivateAttr(None)
    """The hash's (rev, state, updated_at) when this copy was read: what a write checks."""
    _stored_bytes: int = PrivateAttr(0)

    @property
    def stored_bytes(self) -> int:
        """Size of the stored document this copy was read from or written as (0 if neither)."""
        return self._stored_bytes

    def __eq__(self, other: object) -> bool:
        # Two copies of the same task are equal whenever they were read: ``_seen`` and
        # ``_stored_bytes`` are bookkeeping for the next write, not part of the record.
        if not isinstance(other, TaskRecord):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

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

    # The lifecycle. Every change of a task's state is one of these methods: each changes the
    # record in place and returns the events to log with the write (``TaskStore.update``), so
    # the orchestrator, the API and the bus move a task the same way.

    def begin(
        self,
        steps: Sequence[StepRecord],
        source: Literal["explicit", "planner", "rules"] | None,
    ) -> list[TaskEvent]:
        """Take the plan and start working; nothing if a concurrent writer planned it first."""
        if self.state != "submitted":
            return []
        # Copies: a retried change must start again from the plan, not from the last try.
        self.steps = [s.model_copy(deep=True) for s in steps]
        self.plan_source = source
        self.state = "working"
        plan = [s.model_dump(include={"id", "specialist", "depends_on"}) for s in steps]
        return [
            TaskEvent(kind="state", state="working", detail={"plan": plan, "plan_source": source})
        ]

    def start_step(self, step: StepRecord, step_input: dict[str, Any]) -> TaskEvent:
        """Mark a step sent to its workers, with the input it was sent."""
        step.status = "running"
        step.input = step_input
        step.started_at = utcnow()
        return TaskEvent(
            kind="step.started", step_id=step.id, detail={"specialist": step.specialist}
        )

    def record(self, result: StepResult) -> list[TaskEvent] | None:
        """Record a step's result, and end the task if that was its last step or a failure.

        None if the result answers no step the task waits for (a duplicate, a stray, or a late
        answer to a task that ended meanwhile: the bus may have failed it beside the document,
        with its steps still marked running).
        """
        if self.terminal:
            return None
        try:
            step = self.step(result.step_id)
        except KeyError:
            return None
        if step.status not in ("pending", "running") or step.specialist != result.specialist:
            return None  # a duplicate, or not an answer to this step
        for field in ("output", "error", "adapter", "adapter_version", "latency_ms", "tokens",
                      "attempts", "escalated", "escalation_reason", "cost_usd",
                      "all_teacher_cost_usd"):  # fmt: skip
            setattr(step, field, getattr(result, field))
        step.finished_at = utcnow()
        detail = {"specialist": step.specialist, "latency_ms": result.latency_ms}
        if not result.valid:
            step.status = "failed"
            reason = f"step {step.id!r} ({step.specialist}) failed: {result.error}"
            failed = TaskEvent(kind="step.failed", step_id=step.id, detail=detail,
                               reason=result.error)  # fmt: skip
            return [failed, *(self.end("failed", reason) or [])]
        step.status = "completed"
        events = [
            TaskEvent(kind="step.completed", step_id=step.id,
                      detail={**detail, "output": result.output})
        ]  # fmt: skip
        if all(s.status == "completed" for s in self.steps):
            self.result = self.final_result()
            self.state = "completed"
            events.append(
                TaskEvent(kind="state", state="completed", detail={"result": self.result})
            )
        return events

    def fail(
        self, reason: str, step: StepRecord | None = None, step_input: Any = None
    ) -> list[TaskEvent]:
        """Fail the task (and ``step``, one that could not be sent), saying why."""
        events = []
        if step is not None:
            step.status = "failed"
            step.error = reason
            step.input = step_input
            step.finished_at = utcnow()
            events.append(TaskEvent(kind="step.failed", step_id=step.id, reason=reason))
        return [*events, *(self.end("failed", reason) or [])]

    def end(self, state: TaskState, reason: str) -> list[TaskEvent] | None:
        """Move the task to a terminal state, ending its unfinished steps: running ones were
        cut off (canceled), pending ones never start (canceled, or skipped after a failure).
        None if it has ended already."""
        if self.terminal:
            return None
        self.state = state
        self.reason = reason
        for step in self.steps:
            if step.status == "running":
                step.status = "canceled"
                step.finished_at = utcnow()
            elif step.status == "pending":
                step.status = "canceled" if state == "canceled" else "skipped"
        return [TaskEvent(kind="state", state=state, reason=reason)]

    def sinks(self) -> list[StepRecord]:
        """Steps no other step depends on: their outputs are the task's result."""
        needed = {dep for step in self.steps for dep in step.depends_on}
        return [step for step in self.steps if step.id not in needed]

    def final_result(self) -> Any:
        """One sink's output as it is; several sinks' outputs by step id."""
        outputs = self.sinks()
        return outputs[0].output if len(outputs) == 1 else {s.id: s.output for s in outputs}


@dataclass(frozen=True)
class TaskFilter:
    """Which of an owner's tasks a listing shows: by state, by a specialist among the steps, and
    by creation time (``since`` inclusive, ``until`` exclusive)."""

    state: str | None = None
    specialist: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def keeps(self, task: TaskRecord) -> bool:
        if self.state is not None and task.state != self.state:
            return False
        return self.specialist is None or any(s.specialist == self.specialist for s in task.steps)


LIST_BATCH = 100
"""Index entries read per round trip while a listing fills a page."""
LIST_MAX_SCANNED = 5_000
"""The most index entries one page reads: a filter that matches almost nothing answers with
a short page and a cursor to go on, rather than reading a whole week of tasks at once."""


def _score(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


class TaskNotFound(LookupError):
    """No task with that id (or not visible to this caller)."""


class TaskStore:
    """Reads and writes task records and their event logs."""

    def __init__(self, redis: RedisClient, *, ttl_s: int = 7 * 86_400, events_maxlen: int = 10_000):
        self.redis = redis
        self.ttl_s = ttl_s
        self.events_maxlen = events_maxlen
        self._create_script = redis.register_script(_CREATE_SCRIPT)
        self._update_script = redis.register_script(_UPDATE_SCRIPT)

    async def create(
        self,
        task: TaskRecord,
        event: TaskEvent | None = None,
        *,
        publish: Sequence[Outgoing] = (),
    ) -> bool:
        """Store a new task and publish ``publish``; False (and nothing sent) if it exists."""
        keys, args = self._script_args(
            task.id, [event or TaskEvent(kind="state", state=task.state)], publish
        )
        head = [_dump(task), task.state, task.updated_at.isoformat()]
        # Listed in the same atomic write as the record (the index shares its hash slot).
        keys.append(names.task_index_key(task.owner or "anonymous"))
        args += [task.id, _score(task.created_at)]
        return bool(await self._create_script(keys=keys, args=[*head, *args]))

    async def page(
        self,
        owner: str | None,
        *,
        limit: int = 20,
        after: str | None = None,
        where: TaskFilter | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """One page of ``owner``'s tasks, newest first, that ``where`` keeps, and the cursor of
        the next page (None at the end): ``<creation µs>-<last id>``, passed back as ``after``.

        Ids whose records expired (or were never written) leave the index as they are met.
        """
        where = where or TaskFilter()
        index = names.task_index_key(owner or "anonymous")
        now = utcnow()
        # Long past any record: a record lives ttl_s after its last change, which is soon after
        # its creation for any task with a deadline.
        await self.redis.zremrangebyscore(index, "-inf", _score(now) - 2 * self.ttl_s * 10**6)
        top: str = "+inf" if where.until is None else f"({_score(where.until)}"
        bottom: str = "-inf" if where.since is None else str(_score(where.since))
        skip_above: tuple[int, str] | None = None
        if after is not None:
            at, _, last_id = after.partition("-")
            top, skip_above = at, (int(at), last_id)
            if where.until is not None and _score(where.until) <= int(at):
                top = f"({_score(where.until)}"
        found: list[TaskRecord] = []
        scanned = 0
        while scanned < LIST_MAX_SCANNED:
            entries: Any = await self.redis.zrevrangebyscore(
                index, top, bottom, start=0, num=LIST_BATCH, withscores=True
            )
            fresh = [(text(m), int(sc)) for m, sc in entries]
            if skip_above is not None:  # the cursor's own score: only ids after its id
                last_score, last_id = skip_above
                fresh = [(m, sc) for m, sc in fresh if sc < last_score or m < last_id]
            if not fresh:
                return found, None
            async with self.redis.pipeline(transaction=False) as pipe:
                for member, _ in fresh:
                    pipe.hgetall(names.task_key(member))
                raws = await pipe.execute()
            gone = []
            for (member, score), raw in zip(fresh, raws, strict=True):
                scanned += 1
                if not raw:
                    gone.append(member)
                    continue
                task = _load(member, raw)
                if where.keeps(task):
                    found.append(task)
                    if len(found) == limit:
                        if gone:
                            await self.redis.zrem(index, *gone)
                        return found, f"{score}-{member}"
            if gone:
                await self.redis.zrem(index, *gone)
            member, score = fresh[-1]
            top, skip_above = str(score), (score, member)
        member, score = fresh[-1]
        return found, f"{score}-{member}"

    async def get(self, task_id: str) -> TaskRecord:
        """The task record, with any terminal state set beside the document applied."""
        raw = await self.redis.hgetall(names.task_key(task_id))
        return _load(task_id, raw)

    async def update(
        self,
        task_id: str,
        change: Callable[[TaskRecord], list[TaskEvent] | None],
        *,
        current: TaskRecord | None = None,
        outbox: list[Outgoing] | None = None,
    ) -> TaskRecord:
        """Apply ``change`` atomically; it edits the record in place and returns events to log.

        ``change`` may be called more than once (on a concurrent write), so it must only look
        at the record it is given. Returning None means nothing changed and nothing is written.
        ``current`` is a copy the caller read with :meth:`get` (or got back from this method):
        the first try changes it instead of reading again. ``change`` may append messages to
        ``outbox`` (emptied before each call); they are published, deduplicated by message
        id, in the same atomic write and before it, and only if the write happens.
        """
        key = names.task_key(task_id)
        for _ in range(MAX_UPDATE_TRIES):
            if current is not None and current._seen is not None:
                task, current = current, None
            else:
                task = _load(task_id, await self.redis.hgetall(key))
            if outbox is not None:
                outbox.clear()
            events = change(task)
            if events is None:
                return task
            assert task._seen is not None
            task.updated_at = utcnow()
            keys, args = self._script_args(task_id, events, outbox or ())
            doc = _dump(task)
            head = [*task._seen, doc, task.state, task.reason or "", task.updated_at.isoformat()]
            written = await self._update_script(keys=keys, args=[*head, *args])
            if written == 1:
                # What the hash holds now, so the caller may pass this copy back as ``current``.
                rev = str(int(task._seen[0] or 0) + 1)
                task._seen = (rev, task.state, task.updated_at.isoformat())
                task._stored_bytes = len(doc)
                return task
            if written == -1:
                raise TaskNotFound(task_id)
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
                out.append((text(entry_id), body))
        return out

    def _script_args(
        self, task_id: str, events: Sequence[TaskEvent], publish: Sequence[Outgoing]
    ) -> tuple[list[str], list[Any]]:
        keys = [names.task_key(task_id), names.task_events_stream(task_id), names.TASK_STATES_KEY]
        args: list[Any] = [self.ttl_s, self.events_maxlen, len(publish), len(events)]
        for message in publish:
            keys += [message.stream, message.dedupe_key]
            args += [message.payload, message.maxlen, message.dedupe_ttl_s]
        for event in events:
            counted = event.state if event.kind == "state" and event.state else ""
            args += [envelope(task_id, event).encode(), counted]
        return keys, args


def _dump(task: TaskRecord) -> str:
    return task.model_dump_json()


def _load(task_id: str, raw: dict[Any, Any]) -> TaskRecord:
    fields = {text(k): text(v) for k, v in raw.items()}
    if "doc" not in fields:
        raise TaskNotFound(task_id)
    task = TaskRecord.model_validate_json(fields["doc"])
    task._seen = (fields.get("rev", ""), fields.get("state", ""), fields.get("updated_at", ""))
    task._stored_bytes = len(fields["doc"])
    # Someone outside the record (the bus's dead-letter path) may have ended the task.
    state = fields.get("state")
    if state in TERMINAL_STATES and not task.terminal:
        task.end(state, fields.get("reason") or task.reason or state)  # type: ignore[arg-type]
    return task
