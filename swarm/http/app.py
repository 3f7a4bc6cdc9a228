"""The HTTP API: submit tasks, watch them, cancel them, list specialists.

A submitted task is checked (plan, specialists, the first steps' input) and stored before the
202 goes out, then handed to the orchestrators over Redis Streams, so nothing accepted is lost.
Every event of a task carries the Redis stream entry id as its SSE id: a client that reconnects
with ``Last-Event-ID`` gets exactly the events it missed, then the live ones (the stream itself
is :mod:`swarm.http.eventstream`).

Errors become problem details (:mod:`swarm.http.problems`); series are in :mod:`swarm.metrics`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from swarm import metrics
from swarm.bus import Bus
from swarm.catalog import CatalogCache
from swarm.connections import RedisClient, connect, redis_client
from swarm.errors import ConfigurationError, RedisUnavailable
from swarm.http import operations, problems, tasks
from swarm.http.deps import AppServices
from swarm.http.limits import BodyLimit, StreamSlots
from swarm.http.ui import Dashboard
from swarm.settings import Settings, get_settings
from swarm.tasks import (
    TaskStore,
)

log = logging.getLogger(__name__)

TAGS = [
    {"name": "tasks", "description": "Submit tasks, read their state, follow and cancel them."},
    {"name": "specialists", "description": "The registered specialists and their status."},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics."},
]


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
        app.state.services = AppServices(
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
    app.state.settings = settings
    app.state.streams = StreamSlots(
        most=settings.api_max_streams, most_per_key=settings.api_max_streams_per_key
    )
    problems.install(app)
    app.openapi = lambda: _openapi(app, secured=bool(settings.api_keys))  # type: ignore[method-assign]
    # Last added runs first: metrics see every response, including a 413 from the body limit.
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.add_middleware(metrics.HttpMetrics)

    app.include_router(tasks.router)
    app.include_router(operations.router)
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
