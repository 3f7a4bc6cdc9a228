"""The HTTP API: submit tasks, watch them, cancel them, list specialists.

A submitted task is checked (plan, specialists, the first steps' input) and stored before the
202 goes out, then handed to the orchestrators over Redis Streams, so nothing accepted is lost.
Every event of a task carries the Redis stream entry id as its SSE id: a client that reconnects
with ``Last-Event-ID`` gets exactly the events it missed, then the live ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm import metrics, names, plans, problems
from swarm.bus import Bus
from swarm.catalog import list_specialists
from swarm.errors import UserError
from swarm.messages import (
    Cancel,
    Envelope,
    StepSpec,
    TaskEvent,
    TaskSubmitted,
    envelope,
    new_id,
    utcnow,
)
from swarm.problems import Problem
from swarm.settings import Settings, get_settings
from swarm.tasks import EVENT_FIELD, StepRecord, TaskNotFound, TaskRecord, TaskStore

MAX_BODY_BYTES = 1 << 20
IDEMPOTENCY_TTL_S = 86_400
SSE_BLOCK_MS = 5_000
SSE_MAX_S = 3_600


class TaskIn(BaseModel):
    """A task to run."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "input": {"text": "Maria Lopez (maria@example.com) joined Acme in Berlin."},
                    "plan": ["pii", "entities"],
                },
                {"input": "Call me at +1 555 0100.", "goal": "redact personal data"},
            ]
        },
    )

    input: str | dict[str, Any] = Field(description="Text, or a JSON object of input fields.")
    plan: list[str] | list[StepSpec] | None = Field(
        None, description="Specialist names (run in order), or steps with dependencies."
    )
    goal: str | None = Field(None, description="What to do, in words, for the planner.")
    deadline_s: float | None = Field(
        None, gt=0, le=86_400, description="Seconds from now after which the task fails."
    )


class TaskAccepted(BaseModel):
    id: str
    state: str
    links: dict[str, str]


class TaskOut(TaskRecord):
    """A task as the API shows it (never its owner)."""

    owner: None = Field(None, exclude=True)


class SpecialistOut(BaseModel):
    name: str
    version: str | None
    status: str
    description: str
    reason: str | None
    eval_summary: dict[str, Any] | None


def owner_of(key: str | None) -> str | None:
    return hashlib.sha256(key.encode()).hexdigest()[:32] if key else None


def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> str | None:
    """The caller's owner id (a hash of its API key); None when auth is off."""
    keys: set[str] = request.app.state.api_keys
    if not keys:
        return None
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or token not in keys:
        raise Problem(
            401,
            "send a valid API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="swarm"'},
        )
    return owner_of(token)


Owner = Annotated[str | None, Depends(caller)]


class BodyLimit:
    """Refuses bodies over the limit with 413, by Content-Length or by counting the stream."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise Problem(413, self._detail())
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> str:
        return f"the request body is larger than {self.limit} bytes"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem_response(413, self._detail())
        await response(scope, receive, send)


def create_app(settings: Settings | None = None, *, redis: Redis | None = None) -> FastAPI:
    """The FastAPI app; it opens its own Redis client unless one is given."""
    settings = settings or get_settings()
    keys = {k.get_secret_value() for k in settings.api_keys}
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        client = redis or Redis.from_url(settings.redis_url)
        state["redis"] = client
        state["store"] = TaskStore(client)
        state["bus"] = Bus(client, settings=settings)
        try:
            yield
        finally:
            if redis is None:
                await client.aclose()

    app = FastAPI(
        title="swarm",
        version="0.1.0",
        description="Submit tasks to distilled specialists and watch them run.",
        lifespan=lifespan,
    )
    app.state.api_keys = keys
    problems.install(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        metrics.HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    async def visible_task(task_id: str, owner: str | None) -> TaskRecord:
        try:
            task: TaskRecord = await state["store"].get(task_id)
        except TaskNotFound:
            task = None  # type: ignore[assignment]
        if task is None or (keys and task.owner != owner):
            raise Problem(404, f"no task {task_id!r}")
        return task

    @app.post(
        "/v1/tasks",
        status_code=202,
        response_model=TaskAccepted,
        tags=["tasks"],
        responses={400: {}, 401: {}, 413: {}, 422: {}},
    )
    async def submit(
        body: TaskIn,
        response: Response,
        owner: Owner,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> TaskAccepted:
        """Accept a task: 202 with its id. The same Idempotency-Key returns the same task."""
        if body.plan is None and not body.goal:
            raise Problem(422, "pass either a 'plan' (specialist names or steps) or a 'goal'")
        redis_client: Redis = state["redis"]
        catalog = {r.name: r for r in await list_specialists(redis_client)}
        steps: list[StepSpec] = []
        try:
            if body.plan is not None:
                steps = plans.normalise(body.plan)
                plans.check_plan(steps, catalog)
                input_problems = plans.first_step_input_problems(steps, body.input, catalog)
                if input_problems:
                    raise Problem(
                        422,
                        "missing or invalid input: " + "; ".join(input_problems),
                        errors=input_problems,
                    )
        except UserError as exc:
            metrics.TASKS_REJECTED.inc()
            raise Problem(422, str(exc)) from exc

        task_id = new_id()
        if idempotency_key:
            key = names.idempotency_key(owner or "-", idempotency_key)
            claimed = await redis_client.set(key, task_id, nx=True, ex=IDEMPOTENCY_TTL_S)
            if not claimed:
                raw: Any = await redis_client.get(key)
                existing = raw.decode() if isinstance(raw, bytes) else str(raw)
                task = await visible_task(existing, owner)
                response.status_code = 200
                return _accepted(task.id, task.state, response)
        deadline: datetime | None = (
            utcnow() + timedelta(seconds=body.deadline_s) if body.deadline_s else None
        )
        task = TaskRecord(
            id=task_id,
            input=body.input,
            goal=body.goal,
            steps=[
                StepRecord(id=s.id, specialist=s.specialist, depends_on=s.depends_on) for s in steps
            ],
            plan_source="explicit" if steps else None,
            owner=owner,
            idempotency_key=idempotency_key,
            deadline=deadline,
        )
        await state["store"].create(task)
        await state["bus"].publish(
            names.TASKS_STREAM,
            envelope(
                task_id,
                TaskSubmitted(
                    input=body.input,
                    plan=steps or None,
                    goal=body.goal,
                    deadline=deadline,
                    owner=owner,
                ),
            ),
        )
        metrics.TASKS_SUBMITTED.labels("explicit" if steps else "planner").inc()
        return _accepted(task_id, "submitted", response)

    @app.get("/v1/tasks/{task_id}", response_model=TaskOut, tags=["tasks"], responses={404: {}})
    async def get_task(task_id: str, owner: Owner) -> dict[str, Any]:
        """The task's state, every step (specialist, adapter, latency, tokens, output), result."""
        task = await visible_task(task_id, owner)
        return task.model_dump(mode="json", exclude={"owner"})

    @app.delete(
        "/v1/tasks/{task_id}",
        status_code=202,
        response_model=TaskOut,
        tags=["tasks"],
        responses={404: {}, 409: {}},
    )
    async def cancel_task(task_id: str, owner: Owner) -> dict[str, Any]:
        """Cancel a task, including a step a worker is running."""
        await visible_task(task_id, owner)
        was_terminal: list[str] = []

        def cancel(task: TaskRecord) -> list[TaskEvent] | None:
            if task.terminal:
                was_terminal.append(task.state)
                return None
            task.state = "canceled"
            task.reason = "canceled by request"
            for step in task.steps:
                if step.status in ("pending", "running"):
                    step.status = "canceled"
            return [TaskEvent(kind="state", state="canceled", reason=task.reason)]

        task = await state["store"].update(task_id, cancel)
        if was_terminal:
            raise Problem(409, f"task {task_id!r} is already {was_terminal[0]}")
        redis_client: Redis = state["redis"]
        await redis_client.set(names.canceled_key(task_id), b"1", ex=86_400)
        await redis_client.publish(names.cancel_channel(task_id), b"canceled")
        await state["bus"].publish(names.TASKS_STREAM, envelope(task_id, Cancel()))
        return task.model_dump(mode="json", exclude={"owner"})

    @app.get(
        "/v1/tasks/{task_id}/events",
        tags=["tasks"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, 404: {}},
    )
    async def task_events(
        task_id: str,
        owner: Owner,
        last_event_id: Annotated[str | None, Header()] = None,
        after: Annotated[str | None, Query(description="Replay events after this id.")] = None,
    ) -> StreamingResponse:
        """Server-sent events: replays what the client missed, then follows live until done."""
        task = await visible_task(task_id, owner)
        start = last_event_id or after or "0-0"
        if not _is_stream_id(start):
            raise Problem(400, f"Last-Event-ID {start!r} is not an event id from this stream")
        return StreamingResponse(
            _event_stream(state["redis"], state["store"], task_id, start, task.terminal),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/v1/specialists", response_model=list[SpecialistOut], tags=["specialists"])
    async def specialists(_owner: Owner) -> list[SpecialistOut]:
        """Every specialist: version, status (ready or rejected, with why), eval summary."""
        return [
            SpecialistOut(
                name=r.name,
                version=r.version,
                status=r.status,
                description=r.description,
                reason=r.reason,
                eval_summary=r.eval_summary,
            )
            for r in await list_specialists(state["redis"])
        ]

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {}})
    async def readyz() -> dict[str, Any]:
        """Redis and every vLLM endpoint answer."""
        down = []
        try:
            await state["redis"].ping()
        except (RedisError, OSError) as exc:
            down.append(f"redis: {exc}")
        async with httpx.AsyncClient(timeout=3) as client:
            for url in settings.vllm_urls:
                try:
                    ok = (await client.get(f"{url}/health")).status_code == 200
                except httpx.HTTPError as exc:
                    ok, reason = False, str(exc) or type(exc).__name__
                else:
                    reason = "unhealthy"
                if not ok:
                    down.append(f"vllm {url}: {reason}")
        if down:
            raise Problem(503, "not ready: " + "; ".join(down), down=down)
        return {"status": "ready"}

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        with contextlib.suppress(RedisError, OSError):
            for stream in (names.TASKS_STREAM, names.RESULTS_STREAM, names.DEAD_LETTER_STREAM):
                metrics.STREAM_DEPTH.labels(stream).set(await state["redis"].xlen(stream))
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


def _accepted(task_id: str, task_state: str, response: Response) -> TaskAccepted:
    link = f"/v1/tasks/{task_id}"
    response.headers["Location"] = link
    return TaskAccepted(
        id=task_id, state=task_state, links={"self": link, "events": f"{link}/events"}
    )


def _is_stream_id(value: str) -> bool:
    left, _, right = value.partition("-")
    return left.isdigit() and right.isdigit()


def _sse(event_id: str, event: TaskEvent) -> str:
    data = event.model_dump_json(exclude={"type"})
    return f"id: {event_id}\nevent: {event.kind}\ndata: {data}\n\n"


async def _event_stream(
    redis: Redis, store: TaskStore, task_id: str, after: str, already_terminal: bool
) -> AsyncIterator[str]:
    """Replay from ``after``, then follow with XREAD, until a terminal state is sent."""
    stream = names.task_events_stream(task_id)
    last = after
    ended_at = time.monotonic() + SSE_MAX_S
    for event_id, event in await store.events(task_id, after=last):
        yield _sse(event_id, event)
        last = event_id
        if event.kind == "state" and event.state in _TERMINAL:
            return
    if already_terminal:
        return
    while time.monotonic() < ended_at:
        response: Any = await redis.xread({stream: last}, block=SSE_BLOCK_MS, count=100)
        if not response:
            yield ": keepalive\n\n"
            continue
        for _name, entries in response:
            for raw_id, fields in entries:
                event_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                last = event_id
                body = Envelope.decode(fields[EVENT_FIELD.encode()]).body
                if isinstance(body, TaskEvent):
                    yield _sse(event_id, body)
                    if body.kind == "state" and body.state in _TERMINAL:
                        return
        await asyncio.sleep(0)


_TERMINAL = {"completed", "failed", "canceled", "rejected"}


def run_api(settings: Settings) -> None:
    """``swarm api``: serve the HTTP API with uvicorn until Ctrl-C."""
    import uvicorn

    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info"
    )
