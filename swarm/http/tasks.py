"""The task routes: submit, list, read, cancel and follow tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from swarm import metrics, names, plans
from swarm.catalog import SpecialistRecord
from swarm.connections import text
from swarm.errors import UnknownSpecialist, UserError
from swarm.http import eventstream, problems
from swarm.http.bodies import (
    CURSOR_PATTERN,
    ISO_TIME_PATTERN,
    TaskAccepted,
    TaskIn,
    TaskLinks,
    TaskOut,
    TaskPage,
    moment,
)
from swarm.http.deps import (
    MAX_ID_LENGTH,
    AppServices,
    AppSettings,
    Owner,
    Services,
    Streams,
    TaskId,
    json_only,
)
from swarm.http.limits import check_input_size, within_rate
from swarm.http.problems import Problem
from swarm.messages import (
    Cancel,
    StepSpec,
    TaskEvent,
    TaskState,
    TaskSubmitted,
    envelope,
    new_id,
    utcnow,
)
from swarm.settings import Settings
from swarm.tasks import (
    StepRecord,
    TaskFilter,
    TaskNotFound,
    TaskRecord,
)
from swarm.tracing import current_traceparent, span

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL_S = 86_400
"""How long an Idempotency-Key keeps pointing at the task it created."""

DEFAULT_CANCEL_REASON = "canceled by request"

EVENT_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"
"""A stream entry id, as the event stream sends it: ``<milliseconds>-<sequence>``."""


router = APIRouter()


@router.post(
    "/v1/tasks",
    status_code=202,
    response_model=TaskAccepted,
    tags=["tasks"],
    summary="Submit a task",
    responses={
        200: {"model": TaskAccepted, "description": "An Idempotency-Key replay."},
        **problems.responses(400, 401, 409, 413, 415, 422, 429, 503),
    },
)
async def submit(
    body: TaskIn,
    response: Response,
    owner: Owner,
    _json: Annotated[None, Depends(json_only)],  # after Owner: a 401 comes first
    services: Services,
    settings: AppSettings,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="Retry-safe submission: the same key (per API key) returns the "
            "task it created for a day, with status 200.",
        ),
    ] = None,
) -> TaskAccepted:
    """Check the task, store it, hand it to the orchestrators: 202 with its id and links.

    A plan is checked before anything is stored: every specialist must be registered and
    ready, step ids unique, dependencies known and acyclic, and each first step's input
    must have the fields its specialist's input schema requires.
    """
    task_id = new_id()
    idem_key = None
    try:
        check_input_size(body.input, settings.max_input_chars, settings.max_model_len)
        steps = plans.normalise(body.plan) if body.plan is not None else []
        if idempotency_key:
            idem_key = names.idempotency_key(owner or "anonymous", idempotency_key)
            # A repeat answers with its task even if the catalog changed since.
            if await services.redis.exists(idem_key):
                return await replay(services, settings, idem_key, body, steps, response)
        if body.plan is not None:  # else a goal: the planner makes the plan
            _check_plan(steps, body.input, await services.catalog.current())
        deadline = _deadline(body, settings.api_max_deadline_s)
    except (UserError, Problem):
        metrics.TASKS_SUBMITTED.labels("rejected").inc()
        raise
    await within_rate(services.redis, owner, settings.api_tasks_per_minute)
    if idem_key is not None:
        claimed = await services.redis.set(idem_key, task_id, nx=True, ex=IDEMPOTENCY_TTL_S)
        if not claimed:  # a concurrent request with the same key won the race
            return await replay(services, settings, idem_key, body, steps, response)

    task = TaskRecord(
        id=task_id,
        state="submitted",
        input=body.input,
        goal=body.goal,
        steps=[
            StepRecord(id=s.id, specialist=s.specialist, depends_on=s.depends_on) for s in steps
        ],
        plan_source="explicit" if body.plan is not None else None,
        owner=owner,
        idempotency_key=idempotency_key,
        deadline=deadline,
    )
    submitted = TaskSubmitted(
        input=body.input, plan=steps or None, goal=body.goal, deadline=deadline, owner=owner
    )
    try:
        with span("task.submit", {"swarm.task_id": task_id}):
            message = envelope(task_id, submitted, traceparent=current_traceparent())
            # Stored and handed over in one atomic write.
            outgoing = services.bus.outgoing(names.TASKS_STREAM, message)
            await services.store.create(task, publish=[outgoing])
    except (RedisError, OSError):
        metrics.TASKS_SUBMITTED.labels("failed").inc()
        await _abandon(services, task_id, idem_key)
        raise
    metrics.TASKS_SUBMITTED.labels("accepted").inc()
    return _accepted(task_id, task.state, response)


async def replay(
    services: AppServices,
    settings: Settings,
    idem_key: str,
    body: TaskIn,
    steps: list[StepSpec],
    response: Response,
) -> TaskAccepted:
    existing = await _replayed_task(services, idem_key, settings.api_idempotency_wait_s)
    if not _same_request(existing, body, steps):
        metrics.TASKS_SUBMITTED.labels("rejected").inc()
        raise Problem(
            409,  # the key's state conflicts with this request, as RFC 9110 puts it
            f"this Idempotency-Key was already used for a different task ({existing.id}); "
            "use a new key for a new task",
            kind="idempotency-key-reused",
        )
    metrics.TASKS_SUBMITTED.labels("duplicate").inc()
    response.status_code = 200
    return _accepted(existing.id, existing.state, response)


@router.get(
    "/v1/tasks",
    response_model=TaskPage,
    response_model_exclude={"tasks": {"__all__": {"owner"}}},
    tags=["tasks"],
    summary="List your tasks",
    responses=problems.responses(401, 422, 503),
)
async def list_tasks(
    owner: Owner,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=100, description="Tasks per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page."),
    ] = None,
    state: Annotated[TaskState | None, Query(description="Only tasks in this state.")] = None,
    specialist: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_ID_LENGTH,
            description="Only tasks with a step on this specialist.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        Query(
            pattern=ISO_TIME_PATTERN,
            description="Created at or after (ISO 8601 date and time; UTC if no offset).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            pattern=ISO_TIME_PATTERN,
            description="Created before (ISO 8601 date and time; UTC if no offset).",
        ),
    ] = None,
) -> dict[str, Any]:
    """The caller's own tasks (every task, with no API keys configured), newest first,
    filtered by state, specialist and creation time. Tasks leave the list as their records
    expire (seven days after their last change)."""
    where = TaskFilter(state=state, specialist=specialist, since=moment("since", since),
                       until=moment("until", until))  # fmt: skip
    tasks, next_cursor = await services.store.page(owner, limit=limit, after=cursor, where=where)
    return {
        "tasks": [t.model_dump(mode="json", exclude={"owner"}) for t in tasks],
        "next_cursor": next_cursor,
    }


@router.get(
    "/v1/tasks/{task_id}",
    response_model=TaskOut,
    response_model_exclude={"owner"},
    tags=["tasks"],
    summary="Read a task",
    responses=problems.responses(401, 404, 503),
)
async def get_task(task_id: TaskId, owner: Owner, services: Services) -> dict[str, Any]:
    """The task's state, every step (specialist, adapter, latency, tokens, output), result."""
    task = await _visible_task(services, task_id, owner)
    return task.model_dump(mode="json", exclude={"owner"})


@router.post(
    "/v1/tasks/{task_id}/cancel",
    status_code=202,
    response_model=TaskOut,
    response_model_exclude={"owner"},
    tags=["tasks"],
    summary="Cancel a task",
    responses=problems.responses(401, 404, 409, 503),
)
async def cancel_task(
    task_id: TaskId,
    owner: Owner,
    services: Services,
    reason: Annotated[
        str, Query(min_length=1, max_length=500, description="Why; shown on the task.")
    ] = DEFAULT_CANCEL_REASON,
) -> dict[str, Any]:
    """Cancel a task and its pending or running steps (a worker mid-step hears it too).

    409 if the task already ended.
    """
    await _visible_task(services, task_id, owner)
    ended: list[str] = []

    def cancel(task: TaskRecord) -> list[TaskEvent] | None:
        ended.clear()  # ``update`` may call this again after a concurrent write
        if task.terminal:
            ended.append(task.state)
        return task.end("canceled", reason)

    task = await services.store.update(task_id, cancel)
    if ended:
        raise Problem(
            409,
            f"task {task_id!r} is already {ended[0]}; only an unfinished task can be canceled",
            kind="task-ended",
        )
    # The one way workers hear of it: the marker, which they check before and during a step.
    await services.redis.set(names.canceled_key(task_id), b"1", ex=names.CANCELED_TTL_S)
    await services.bus.publish(names.TASKS_STREAM, envelope(task_id, Cancel(reason=reason)))
    metrics.TASKS_CANCELED.inc()
    return task.model_dump(mode="json", exclude={"owner"})


@router.get(
    "/v1/tasks/{task_id}/events",
    tags=["tasks"],
    summary="Follow a task's events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events, one per task event: `id:` the event id, "
            "`event:` its kind, `data:` the TaskEvent as JSON. Comment lines are keepalives. "
            "The stream closes after the terminal state event.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problems.responses(400, 401, 404, 429, 503),
    },
)
async def task_events(
    task_id: TaskId,
    owner: Owner,
    services: Services,
    settings: AppSettings,
    streams: Streams,
    last_event_id: Annotated[
        str | None,
        # Sent by EventSource on its own when it reconnects: part of the SSE protocol, so
        # not an operation parameter in the document (``after`` is, for plain clients).
        # Checked below, with a 400 that says what an event id looks like.
        Header(include_in_schema=False),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            pattern=EVENT_ID_PATTERN,
            description="Resume after this event id (for plain clients).",
        ),
    ] = None,
) -> StreamingResponse:
    """Replays the events after ``Last-Event-ID`` (or ``after``; all without either), then
    follows live until the task ends or the stream's time limit passes."""
    task = await _visible_task(services, task_id, owner)
    start = (last_event_id or after or "0-0").strip()
    holder = owner or "anonymous"
    if not eventstream.is_stream_id(start):
        raise Problem(
            400,
            f"{start!r} is not an event id; pass the id of an event this stream sent "
            "('<milliseconds>-<sequence>')",
            kind="invalid-event-id",
        )
    streams.open(holder)  # a 429 when this process or this key has too many open
    return StreamingResponse(
        streams.held(
            holder,
            eventstream.event_stream(
                services.redis,
                services.store,
                task_id,
                start,
                keepalive_s=settings.api_sse_keepalive_s,
                max_s=settings.api_sse_max_s,
                ended=task.terminal,
            ),
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _check_plan(
    steps: list[StepSpec], task_input: str | dict[str, Any], catalog: dict[str, SpecialistRecord]
) -> None:
    """Raise a 422 saying what to fix if an explicit plan cannot run on this input."""
    try:
        plans.check_plan(steps, catalog)
    except UnknownSpecialist as exc:
        raise Problem(
            422,
            str(exc),
            kind="unknown-specialist",
            registered=sorted(name for name, r in catalog.items() if r.ready),
        ) from exc
    missing = plans.first_step_input_problems(steps, task_input, catalog)
    if missing:
        raise Problem(
            422,
            "the input does not fit the first step(s): " + "; ".join(missing),
            kind="invalid-input",
            errors=[{"location": "body", "pointer": "#/input", "detail": m} for m in missing],
        )


async def _replayed_task(services: AppServices, idem_key: str, wait_s: float) -> TaskRecord:
    """The task an Idempotency-Key already points at, once that task is stored.

    The first request claims the key before it stores the task, so a concurrent replay may see
    the key a moment before the task: wait for it, briefly.
    """
    deadline = time.monotonic() + wait_s
    while True:
        raw = await services.redis.get(idem_key)
        if raw is None:
            # The first request failed and released the key: tell the client to retry.
            raise Problem(
                409,
                "a request with this Idempotency-Key failed just now; retry it",
                kind="idempotency-key-in-use",
            )
        with contextlib.suppress(TaskNotFound):
            return await services.store.get(text(raw))
        if time.monotonic() > deadline:
            raise Problem(
                409,
                "a request with this Idempotency-Key is still being processed; retry shortly",
                kind="idempotency-key-in-use",
                headers={"Retry-After": "1"},
            )
        await asyncio.sleep(0.05)


def _same_request(task: TaskRecord, body: TaskIn, steps: list[StepSpec]) -> bool:
    """Whether a repeated Idempotency-Key asks for the task it made (deadlines may differ: a
    relative one moves with the clock)."""
    return (
        task.input == body.input
        and task.goal == body.goal
        and [step.spec() for step in task.steps] == steps
        and (task.plan_source == "explicit") == (body.plan is not None)
    )


def _deadline(body: TaskIn, max_deadline_s: float) -> datetime | None:
    """The task's absolute deadline, or raise a 422 if it has passed or is too far away."""
    if body.deadline_s is not None:
        if body.deadline_s > max_deadline_s:
            raise Problem(
                422,
                f"deadline_s is {body.deadline_s:g} s; at most {max_deadline_s:g} s is allowed",
                kind="invalid-deadline",
            )
        return utcnow() + timedelta(seconds=body.deadline_s)
    if body.deadline is None:
        return None
    left = (body.deadline - utcnow()).total_seconds()
    if left <= 0:
        raise Problem(
            422,
            f"the deadline {body.deadline.isoformat()} has passed; pass a future time",
            kind="invalid-deadline",
        )
    if left > max_deadline_s:
        raise Problem(
            422,
            f"the deadline is {left:.0f} s away; at most {max_deadline_s:g} s is allowed",
            kind="invalid-deadline",
        )
    return body.deadline


async def _abandon(services: AppServices, task_id: str, idem_key: str | None) -> None:
    """Best effort after a failed hand-off: free the key for a retry, and fail the stored task.

    The store-and-hand-over write is atomic, but an error may still come after it took effect
    (a reply lost on the way back). The client was told the submission failed and may submit
    again, so the task must not also run: failing it makes the orchestrators drop it at its
    next message, and tell the workers to drop its steps."""
    with contextlib.suppress(RedisError, OSError):
        if idem_key:
            await services.redis.delete(idem_key)
    with contextlib.suppress(RedisError, OSError, LookupError):

        def fail(task: TaskRecord) -> list[TaskEvent] | None:
            return task.end("failed", "the API could not hand the task to the orchestrators")

        await services.store.update(task_id, fail)


def _accepted(task_id: str, state: str, response: Response) -> TaskAccepted:
    link = f"/v1/tasks/{task_id}"
    response.headers["Location"] = link
    return TaskAccepted(
        id=task_id, state=state, links=TaskLinks(self=link, events=f"{link}/events")
    )


async def _visible_task(services: AppServices, task_id: str, owner: str | None) -> TaskRecord:
    """The task, if the caller may see it; otherwise 404 (never 403: ids are not disclosed)."""
    try:
        task = await services.store.get(task_id)
    except TaskNotFound:
        task = None
    if task is None or (owner is not None and task.owner != owner):
        raise Problem(404, f"no task {task_id!r}", kind="task-not-found")
    return task
