"""The HTTP API: submit tasks, watch them, cancel them, list specialists.

A submitted task is checked (plan, specialists, the first steps' input) and stored before the
202 goes out, then handed to the orchestrators over Redis Streams, so nothing accepted is lost.
Every event of a task carries the Redis stream entry id as its SSE id: a client that reconnects
with ``Last-Event-ID`` gets exactly the events it missed, then the live ones (the stream itself
is :mod:`swarm.http.eventstream`).

Errors become problem details (:mod:`swarm.http.problems`); series are in :mod:`swarm.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm import metrics, names, plans
from swarm.bus import Bus
from swarm.catalog import CatalogCache, SpecialistOut, SpecialistRecord
from swarm.connections import RedisClient, connect, redis_client, shown, text
from swarm.errors import ConfigurationError, RedisUnavailable, UnknownSpecialist, UserError
from swarm.http import agentcard, eventstream, problems
from swarm.http.problems import Problem
from swarm.http.ui import Dashboard
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
from swarm.settings import Settings, get_settings
from swarm.tasks import (
    StepRecord,
    TaskFilter,
    TaskNotFound,
    TaskRecord,
    TaskStore,
)
from swarm.tracing import current_traceparent, span

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL_S = 86_400
"""How long an Idempotency-Key keeps pointing at the task it created."""
MAX_ID_LENGTH = 128
DEFAULT_CANCEL_REASON = "canceled by request"


TAGS = [
    {"name": "tasks", "description": "Submit tasks, read their state, follow and cancel them."},
    {"name": "specialists", "description": "The registered specialists and their status."},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics."},
]


# Wire models


def _plan_item_kind(value: Any) -> str:
    # Tags named like pydantic's own union tags, so problems.validation_errors drops them from
    # error locations: an error says 'plan.0.id: Field required', not 'plan.0.StepSpec.id'.
    return "str" if isinstance(value, str) else "StepSpec"


PlanItem = Annotated[
    Annotated[str, Tag("str")] | Annotated[StepSpec, Tag("StepSpec")],
    Discriminator(_plan_item_kind),
]


class TaskIn(BaseModel):
    """A task to run: an input, and either a plan or a goal for the planner."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "input": {"text": "Maria Lopez (maria@example.com) joined Acme in Berlin."},
                    "plan": ["pii", "entities"],
                },
                {
                    "input": {"text": "Ask the sales table how many orders came from Berlin."},
                    "plan": [
                        {"id": "clean", "specialist": "pii", "depends_on": []},
                        {"id": "query", "specialist": "sql", "depends_on": ["clean"]},
                    ],
                },
                {"input": "Call me at +1 555 0100.", "goal": "redact personal data"},
            ],
            # A deadline is given one way or the other, never both.
            "not": {"required": ["deadline_s", "deadline"]},
            # A plan, or a goal in words for the planner.
            "anyOf": [
                {"required": ["plan"], "properties": {"plan": {"type": "array"}}},
                {
                    "required": ["goal"],
                    "properties": {"goal": {"type": "string", "pattern": r"\S"}},
                },
            ],
        },
    )

    input: str | dict[str, Any] = Field(
        description="Text (seen by specialists as {'text': ...}), or a JSON object of fields.",
        # Text must not be blank; JSON Schema applies "pattern" to strings only.
        json_schema_extra={"pattern": r"\S"},
    )
    plan: list[PlanItem] | None = Field(
        None,
        description=f"Specialist names, run in order, or steps with dependencies "
        f"(at most {plans.MAX_STEPS}). Either a plan or a goal is required.",
    )
    goal: str | None = Field(None, description="What to do, in words, for the planner.")
    deadline_s: float | None = Field(
        None, gt=0, description="Seconds from now after which the task fails (at most a day)."
    )
    deadline: AwareDatetime | None = Field(
        None, description="When the task fails if not done, with a time zone; or use deadline_s."
    )

    @field_validator("input", mode="before")
    @classmethod
    def _some_input(cls, value: Any) -> Any:
        # One message instead of one per union member ('should be a valid string', '... dict').
        if not isinstance(value, str | dict):
            raise ValueError("must be a string or a JSON object")
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty; pass the text to work on")
        return value

    @model_validator(mode="after")
    def _plan_or_goal(self) -> TaskIn:
        if self.plan is None and not (self.goal or "").strip():
            raise ValueError(
                "pass either a 'plan' (specialist names, or steps) or a 'goal' for the planner"
            )
        if self.deadline_s is not None and self.deadline is not None:
            raise ValueError("pass 'deadline_s' or 'deadline', not both")
        return self


class TaskLinks(BaseModel):
    self: str = Field(description="The task's state.")
    events: str = Field(description="The task's server-sent events.")


class TaskAccepted(BaseModel):
    """A task the API stored and handed to the orchestrators."""

    id: str
    state: str
    links: TaskLinks


def _hide_owner(schema: dict[str, Any]) -> None:
    schema.get("properties", {}).pop("owner", None)


class TaskOut(TaskRecord):
    """A task as the API shows it: state, every step (specialist, adapter, latency, tokens,
    output) and the result. Never its owner."""

    model_config = ConfigDict(json_schema_extra=_hide_owner)


class TaskPage(BaseModel):
    """One page of the caller's tasks, newest first."""

    tasks: list[TaskOut]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next (older) page; absent at the end."
    )


CURSOR_PATTERN = r"^[0-9]{1,20}-[A-Za-z0-9_.:-]{1,128}$"


ISO_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]{2,15}(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"


ISO_TIME = "(an ISO 8601 date and time; UTC if it names no offset)"


def _moment(name: str, text: str | None) -> datetime | None:
    """A query's ISO 8601 time, read as UTC when it names no offset; a 422 if it is no time."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Problem(
            422, f"query {name}: {text!r} is no ISO 8601 time; e.g. 2026-12-05T14:00:00Z",
            kind="validation-error",
        ) from None  # fmt: skip
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Health(BaseModel):
    status: str = Field(description="'ok': the process is up.")


class Readiness(BaseModel):
    status: str = Field(description="'ready'.")
    checks: dict[str, str] = Field(description="Each dependency and 'ok' (or what failed).")


# Plumbing


@dataclass
class _Services:
    redis: RedisClient
    store: TaskStore
    bus: Bus
    http: httpx.AsyncClient
    catalog: CatalogCache


# Dependencies are coroutines even where they do no I/O: FastAPI runs a plain function in a
# worker thread, and three thread hops cost a submission more than the rest of it together.


async def _services(request: Request) -> _Services:
    services: _Services = request.app.state.services
    return services


Services = Annotated[_Services, Depends(_services)]


def owner_of(key: str) -> str:
    """The owner id of an API key: its SHA-256, so Redis never holds a key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


_bearer = HTTPBearer(auto_error=False, description="One of SWARM_API_KEYS, when set.")


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """The caller's owner id; None when the API runs without keys."""
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return None
    if credentials is None:
        raise Problem(
            401,
            "this server needs an API key: send 'Authorization: Bearer <key>'",
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="swarm"'},
        )
    token = credentials.credentials.encode()
    # Compare with every key in constant time, so response timing does not reveal a prefix.
    if not any([hmac.compare_digest(token, key) for key in keys]):
        raise Problem(
            401,
            "the API key is not valid; send one of the server's keys as "
            "'Authorization: Bearer <key>'",
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="swarm", error="invalid_token"'},
        )
    return owner_of(credentials.credentials)


Owner = Annotated[str | None, Depends(_caller)]


async def _json_only(
    content_type: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Refuse a body that says it is not JSON, rather than failing to find fields in it."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise Problem(
            415,
            f"send the task as JSON with 'Content-Type: application/json', not {media!r}",
            kind="unsupported-media-type",
        )


TaskId = Annotated[str, Path(max_length=MAX_ID_LENGTH, description="The task id.")]


class BodyLimit:
    """Refuses bodies over ``limit`` bytes with 413, by Content-Length or by counting the stream.

    The body is buffered here (it is small by construction) and replayed to the app, so a
    chunked upload that grows too large is refused before any handler sees a byte of it.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: http.disconnect, for streaming responses

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem_response(
            413,
            f"the request body is larger than {self.limit} bytes; send a smaller input",
            kind="body-too-large",
            instance=scope.get("path"),
        )
        await response(scope, receive, send)


# The app


async def _open_redis(url: str, max_connections: int) -> RedisClient:
    """A client for ``url``, a cluster client if it points at a cluster. An unreachable Redis
    does not stop the API from starting: ``/readyz`` says so, and calls fail as 503 until
    it is back."""
    try:
        return await connect(url, max_connections=max_connections)
    except RedisUnavailable as exc:
        log.warning("%s; starting anyway", exc)
        return redis_client(url, max_connections=max_connections)


def create_app(
    settings: Settings | None = None,
    *,
    redis: RedisClient | None = None,
) -> FastAPI:
    """The FastAPI app. It opens its own Redis client from ``settings`` unless one is given
    (a given client is left open on shutdown)."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = (
            redis
            if redis is not None
            else await _open_redis(settings.redis_url, settings.redis_max_connections)
        )
        http = httpx.AsyncClient(timeout=settings.api_ready_timeout_s)
        app.state.services = _Services(
            redis=client,
            store=TaskStore(client),
            bus=Bus(client, settings=settings),
            http=http,
            catalog=CatalogCache(client),
        )
        try:
            yield
        finally:
            await http.aclose()
            if redis is None:
                await client.aclose()

    app = FastAPI(
        title="swarm",
        version="0.1.0",
        summary="A runtime for small distilled specialist models.",
        description=(
            "Submit tasks to distilled specialists and watch them run. Every error is an RFC 9457 "
            "problem (`application/problem+json`) whose `detail` says what to fix. When the "
            "server has API keys, `/v1/*` needs `Authorization: Bearer <key>` and a task is "
            "visible only to the key that created it."
        ),
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.api_keys = [key.get_secret_value().encode() for key in settings.api_keys]
    streams = StreamSlots(
        most=settings.api_max_streams, most_per_key=settings.api_max_streams_per_key
    )
    problems.install(app)
    app.openapi = lambda: _openapi(app, secured=bool(settings.api_keys))  # type: ignore[method-assign]
    # Last added runs first: metrics see every response, including a 413 from the body limit.
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.add_middleware(metrics.HttpMetrics)

    @app.post(
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
        _json: Annotated[None, Depends(_json_only)],  # after Owner: a 401 comes first
        services: Services,
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
            _check_input_size(body.input, settings.max_input_chars, settings.max_model_len)
            steps = plans.normalise(body.plan) if body.plan is not None else []
            if idempotency_key:
                idem_key = names.idempotency_key(owner or "anonymous", idempotency_key)
                # A repeat answers with its task even if the catalog changed since.
                if await services.redis.exists(idem_key):
                    return await replay(idem_key, body, steps, response)
            if body.plan is not None:  # else a goal: the planner makes the plan
                _check_plan(steps, body.input, await services.catalog.current())
            deadline = _deadline(body, settings.api_max_deadline_s)
        except (UserError, Problem):
            metrics.TASKS_SUBMITTED.labels("rejected").inc()
            raise
        await _within_rate(services.redis, owner, settings.api_tasks_per_minute)
        if idem_key is not None:
            claimed = await services.redis.set(idem_key, task_id, nx=True, ex=IDEMPOTENCY_TTL_S)
            if not claimed:  # a concurrent request with the same key won the race
                return await replay(idem_key, body, steps, response)

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
        idem_key: str, body: TaskIn, steps: list[StepSpec], response: Response
    ) -> TaskAccepted:
        existing = await _replayed_task(
            app.state.services, idem_key, settings.api_idempotency_wait_s
        )
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

    @app.get(
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
        where = TaskFilter(state=state, specialist=specialist, since=_moment("since", since),
                           until=_moment("until", until))  # fmt: skip
        tasks, next_cursor = await services.store.page(
            owner, limit=limit, after=cursor, where=where
        )
        return {
            "tasks": [t.model_dump(mode="json", exclude={"owner"}) for t in tasks],
            "next_cursor": next_cursor,
        }

    @app.get(
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

    @app.post(
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

    @app.get(
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

    @app.get(
        "/v1/specialists",
        response_model=list[SpecialistOut],
        tags=["specialists"],
        summary="List specialists",
        responses=problems.responses(401, 503),
    )
    async def specialists(_owner: Owner, services: Services) -> list[SpecialistOut]:
        """Every specialist: version, status (ready or rejected, with why), eval summary."""
        return [SpecialistOut.of(r) for r in (await services.catalog.current()).values()]

    @app.get("/healthz", tags=["operations"], response_model=Health, summary="Liveness")
    async def healthz() -> Health:
        """The process is up (it checks nothing else)."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        tags=["operations"],
        response_model=Readiness,
        summary="Readiness",
        responses=problems.responses(503),
    )
    async def readyz(services: Services) -> Readiness:
        """Redis answers PING and every vLLM server answers ``/health``; 503 names what is down.

        Model servers are named by their place in SWARM_VLLM_URLS ("vllm 1"), never by URL: the
        probe is open to anyone, and internal addresses are the operator's to see (in the log).
        """
        names_ = ["redis", *(f"vllm {n}" for n in range(1, len(settings.vllm_urls) + 1))]
        timeout = settings.api_ready_timeout_s
        probes = [
            _ping(services.redis, timeout),
            *(_health(services.http, url) for url in settings.vllm_urls),
        ]
        results = await asyncio.gather(*probes)
        checks = dict(zip(names_, results, strict=True))
        down = [f"{name}: {result}" for name, result in checks.items() if result != "ok"]
        if down:
            for url, result in zip(settings.vllm_urls, results[1:], strict=True):
                if result != "ok":
                    log.warning("not ready: vLLM at %s: %s", shown(url), result)
            raise Problem(503, "not ready: " + "; ".join(down), kind="not-ready", checks=checks)
        return Readiness(status="ready", checks=checks)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    )
    async def prometheus(services: Services) -> Response:
        """Request counts and latency, submissions, cancellations, open event streams, and the
        length of each swarm stream."""
        with contextlib.suppress(RedisError, OSError):
            await metrics.refresh(services.redis)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get(
        "/.well-known/agent-card.json",
        tags=["operations"],
        summary="A2A agent card",
        responses=problems.responses(503),
    )
    async def agent_card(request: Request, services: Services) -> dict[str, Any]:
        """The swarm as an A2A agent: each ready specialist a skill, with its input and output
        media types and, with keys, the bearer scheme. Open to anyone, like the OpenAPI
        document; it follows the registry."""
        records = await services.catalog.current()
        return agentcard.agent_card(records, str(request.base_url), secured=bool(settings.api_keys))

    app.mount("/ui", Dashboard(), name="ui")
    return app


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def anonymous_problem(settings: Settings) -> str | None:
    """Why the API may not start without keys on its address; None where it may.

    Without ``SWARM_API_KEYS`` anyone who reaches the port can submit tasks and read every
    task, so only a loopback address is served so unless ``SWARM_API_ALLOW_ANONYMOUS`` says
    the operator means it (a port published on loopback only, say)."""
    if settings.api_keys or settings.api_allow_anonymous:
        return None
    host = settings.api_host.strip("[]")
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    return (
        f"refusing to serve the API on {settings.api_host} without keys: set SWARM_API_KEYS "
        "(comma-separated), bind SWARM_API_HOST=127.0.0.1, or set "
        "SWARM_API_ALLOW_ANONYMOUS=true to serve anyone who can reach the port"
    )


def run_api(settings: Settings) -> None:
    """``swarm api``: serve the HTTP API with uvicorn until interrupted.

    Raises :class:`ConfigurationError` where :func:`anonymous_problem` says so.
    """
    import uvicorn

    problem = anonymous_problem(settings)
    if problem is not None:
        raise ConfigurationError(problem)
    if not settings.api_keys:
        log.warning(
            "the API runs without keys on %s:%d: every request is accepted (set SWARM_API_KEYS)",
            settings.api_host, settings.api_port,
        )  # fmt: skip
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
    )


# The OpenAPI document

EVENT_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"
"""A stream entry id, as the event stream sends it: ``<milliseconds>-<sequence>``."""
SSE_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The event id: resume after it."},
        "event": {
            "type": "string",
            "description": "The event's kind ('state', 'step.started'...).",
        },
        "data": {"type": "string", "description": "The TaskEvent as JSON."},
    },
}


def _openapi(app: FastAPI, *, secured: bool) -> dict[str, Any]:
    """FastAPI's document, made to tell the truth: every error is ``application/problem+json``
    (validation errors included), the event stream's events are described, and the bearer
    scheme is declared only when the server has keys."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(
        title=app.title, version=app.version, summary=app.summary,
        description=app.description, routes=app.routes, tags=app.openapi_tags,
    )  # fmt: skip
    problem = {"$ref": "#/components/schemas/ProblemDetails"}
    components = document.setdefault("components", {})
    for path in document.get("paths", {}).values():
        for operation in path.values():
            if not secured:
                operation.pop("security", None)
            for parameter in operation.get("parameters", []):
                # An optional header or query parameter is absent, never null: "null" would be
                # sent as text.
                options = parameter.get("schema", {}).get("anyOf")
                if options and {"type": "null"} in options and len(options) == 2:
                    kept = next(o for o in options if o != {"type": "null"})
                    rest = {k: v for k, v in parameter["schema"].items() if k != "anyOf"}
                    parameter["schema"] = {**kept, **rest}
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {problems.MEDIA_TYPE: {"schema": problem}}
                stream = response.get("content", {}).get("text/event-stream")
                if stream is not None:
                    stream["schema"] = SSE_EVENT_SCHEMA
    schemas = components.get("schemas", {})
    plan = schemas.get("TaskIn", {}).get("properties", {}).get("plan")
    if plan is not None:
        # All names or all steps, never a mix (pydantic reads it as one list of either).
        steps = {"$ref": "#/components/schemas/StepSpec"}
        plan["anyOf"] = [
            {"type": "array", "items": {"type": "string"}},
            {"type": "array", "items": steps},
            {"type": "null"},
        ]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if not secured:
        components.pop("securitySchemes", None)
    app.openapi_schema = document
    return document


# Submission


CHARS_PER_TOKEN = 4
"""Characters per token in English text for the tokenizers swarm serves: an input longer than
the context at this rate almost never fits (only text a tokenizer merges into long tokens)."""


def _check_input_size(task_input: str | dict[str, Any], most: int, context_tokens: int) -> None:
    """A 413 for an input longer than SWARM_MAX_INPUT_CHARS, or than the model's context can
    hold even at :data:`CHARS_PER_TOKEN`: no worker could run it."""
    length = (
        len(task_input)
        if isinstance(task_input, str)
        else len(json.dumps(task_input, ensure_ascii=False))
    )
    if length > context_tokens * CHARS_PER_TOKEN:
        raise Problem(
            413,
            f"the input is {length} characters, about {length // CHARS_PER_TOKEN} tokens or "
            f"more: it cannot fit the model's context of {context_tokens} tokens "
            "(SWARM_MAX_MODEL_LEN); split it into several tasks",
            kind="input-too-long",
        )
    if length > most:
        raise Problem(
            413,
            f"the input is {length} characters; this server takes at most {most} "
            "(SWARM_MAX_INPUT_CHARS): split it into several tasks",
            kind="input-too-long",
        )


async def _within_rate(redis: RedisClient, owner: str | None, per_minute: int) -> None:
    """A 429 once ``owner`` submitted ``per_minute`` tasks this minute; the count lives in
    Redis, so every API replica shares it."""
    if per_minute <= 0:
        return
    now = time.time()
    key = names.rate_key(owner or "anonymous", int(now // 60))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = await pipe.execute()
    if int(count) > per_minute:
        retry = max(1, 60 - int(now % 60))
        raise Problem(
            429,
            f"this key submitted {per_minute} tasks this minute (SWARM_API_TASKS_PER_MINUTE); "
            f"try again in {retry} s",
            kind="rate-limited",
            headers={"Retry-After": str(retry)},
        )


class StreamSlots:
    """Open event streams, by API key, within a process-wide and a per-key cap: each stream
    holds a Redis connection for up to an hour, so unbounded streams could starve the rest."""

    RETRY_AFTER_S = 5

    def __init__(self, *, most: int, most_per_key: int) -> None:
        self.most = most
        self.most_per_key = most_per_key
        self.by_key: dict[str, int] = {}

    def open(self, holder: str) -> None:
        """Take a slot for ``holder``, or raise a 429 saying which cap was reached."""
        if sum(self.by_key.values()) >= self.most:
            why = f"this server follows {self.most} event streams already (SWARM_API_MAX_STREAMS)"
        elif self.by_key.get(holder, 0) >= self.most_per_key:
            why = (f"this key holds {self.most_per_key} event streams open already "
                   "(SWARM_API_MAX_STREAMS_PER_KEY); close one")  # fmt: skip
        else:
            self.by_key[holder] = self.by_key.get(holder, 0) + 1
            return
        raise Problem(
            429, f"{why}; try again in {self.RETRY_AFTER_S} s", kind="too-many-streams",
            headers={"Retry-After": str(self.RETRY_AFTER_S)},
        )  # fmt: skip

    async def held(self, holder: str, events: AsyncIterator[str]) -> AsyncIterator[str]:
        """``events``, giving the slot back when the stream ends or the client goes."""
        try:
            async for event in events:
                yield event
        finally:
            self.by_key[holder] -= 1
            if not self.by_key[holder]:
                del self.by_key[holder]


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


async def _replayed_task(services: _Services, idem_key: str, wait_s: float) -> TaskRecord:
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


async def _abandon(services: _Services, task_id: str, idem_key: str | None) -> None:
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


async def _visible_task(services: _Services, task_id: str, owner: str | None) -> TaskRecord:
    """The task, if the caller may see it; otherwise 404 (never 403: ids are not disclosed)."""
    try:
        task = await services.store.get(task_id)
    except TaskNotFound:
        task = None
    if task is None or (owner is not None and task.owner != owner):
        raise Problem(404, f"no task {task_id!r}", kind="task-not-found")
    return task


# Readiness


async def _ping(redis: RedisClient, timeout_s: float) -> str:
    try:
        await asyncio.wait_for(redis.ping(), timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except (RedisError, OSError) as exc:
        return _failure(exc)
    return "ok"


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _health(http: httpx.AsyncClient, url: str) -> str:
    try:
        response = await http.get(f"{url}/health")
    except httpx.HTTPError as exc:
        return _failure(exc)
    return "ok" if response.status_code == 200 else f"/health answered {response.status_code}"
