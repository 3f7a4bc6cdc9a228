"""Problem details (RFC 9457): every error the HTTP API returns, as JSON a user can act on.

This module is the edge where the swarm error tree becomes HTTP. Bad input is always a 4xx whose
``detail`` says what to fix; only a dependency that is down (503) or a bug (500) is a 5xx. Every
body is ``application/problem+json``::

    {"type": "tag:swarm,2026:problem/invalid-plan", "title": "Invalid plan", "status": 422,
     "detail": "the plan has a cycle: a -> b -> a", "instance": "/v1/tasks"}

``type`` names the kind of problem, so a client can branch on it without parsing ``detail``. The
URIs are ``tag:`` URIs (RFC 4151), as RFC 9457 suggests for types that are not meant to be
dereferenced. Extension members carry the particulars: ``errors`` (one entry per invalid field),
``registered`` (the specialists a plan may name), ``checks`` (what ``/readyz`` found).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from swarm.errors import (
    ConfigurationError,
    InfrastructureError,
    InvalidMessage,
    LimitExceeded,
    ModelBehaviorError,
    SwarmError,
    UserError,
)
from swarm.tasks import TaskNotFound

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "tag:swarm,2026:problem/"
"""Prefix of every problem ``type``; the suffix is a kebab-case slug such as ``invalid-plan``."""
MAX_LISTED_ERRORS = 5
"""How many field errors ``detail`` spells out; ``errors`` always holds all of them."""


class FieldError(BaseModel):
    """One invalid part of a request."""

    model_config = ConfigDict(extra="allow")

    location: str = Field(description="'body', 'header', 'query' or 'path'.")
    pointer: str | None = Field(
        None, description="JSON Pointer into the body (RFC 6901), e.g. '#/plan/0/specialist'."
    )
    name: str | None = Field(None, description="The header, query or path parameter at fault.")
    detail: str = Field(description="What is wrong and how to fix it.")


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: what went wrong and what to do about it."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": TYPE_BASE + "unknown-specialist",
                    "title": "Unknown specialist",
                    "status": 422,
                    "detail": "step 's1': no specialist named 'sqll'; registered: pii, sql",
                    "instance": "/v1/tasks",
                    "registered": ["pii", "sql"],
                }
            ]
        },
    )

    type: str = Field(description="URI naming the kind of problem; stable, for clients.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="This occurrence, in words a user can act on.")
    instance: str | None = Field(None, description="The request path that had the problem.")
    errors: list[FieldError] | None = Field(None, description="Every invalid field, if any.")


class Problem(Exception):
    """Raise from an endpoint to answer with a problem-details body.

    ``kind`` is the slug of the problem type (default: from the status); ``extra`` become
    extension members of the body.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.title = title
        self.headers = headers
        self.extra = extra


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _slug(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An ``application/problem+json`` response."""
    slug = kind or _slug(_phrase(status).replace(" ", ""))
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title or (slug.replace("-", " ").capitalize() if kind else _phrase(status)),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def status_of(exc: SwarmError) -> int:
    """The HTTP status of an error from the swarm tree."""
    if isinstance(exc, InvalidMessage):
        return 400
    if isinstance(exc, ConfigurationError):
        return 500  # the server's settings, not the caller's request
    if isinstance(exc, UserError | LimitExceeded):
        return 422
    if isinstance(exc, ModelBehaviorError):
        return 502
    if isinstance(exc, InfrastructureError):
        return 503
    return 500


def _allowed_methods(request: Request) -> str:
    """The methods every route of the app serves on the request's path, as an Allow header."""
    methods: set[str] = set()
    for route in request.app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem bodies for these statuses."""
    return {
        status: {
            "model": ProblemDetails,
            "description": _DESCRIPTIONS.get(status, _phrase(status)),
            "content": {MEDIA_TYPE: {}},
        }
        for status in statuses
    }


_DESCRIPTIONS = {
    400: "Malformed request: the body is not JSON, or a header is not in the expected form.",
    401: "No valid API key: send 'Authorization: Bearer <key>'.",
    404: "No such task, or it belongs to another API key.",
    409: "The request conflicts with the task's current state.",
    413: "The request body, or the task's input, is too large.",
    415: "The request body is not JSON.",
    422: "The request is well-formed but cannot be run; 'detail' says what to fix.",
    429: "Too many tasks this minute, or event streams open, for this key: see Retry-After.",
    503: "A dependency (Redis or a model server) is down.",
}


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI validation errors as :class:`FieldError` dicts."""
    out = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if not _is_union_tag(part)]
        location = str(loc[0]) if loc else "body"
        path = [str(part) for part in loc[1:]]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        item: dict[str, Any] = {"location": location, "detail": message}
        if location == "body":
            item["pointer"] = "#/" + "/".join(path) if path else "#"
        else:
            item["name"] = ".".join(path)
        out.append(item)
    return out


def _is_union_tag(part: Any) -> bool:
    # Pydantic puts the union member it tried into the location ('str', 'StepSpec',
    # 'dict[str,any]'); our field names are snake_case, so these are told apart by their shape.
    if not isinstance(part, str):
        return False
    return part in {"str", "int", "float", "bool"} or "[" in part or part[:1].isupper()


def describe_errors(items: Sequence[dict[str, Any]]) -> str:
    """One line naming each invalid field and what is wrong with it."""
    parts = []
    for item in items[:MAX_LISTED_ERRORS]:
        where = item.get("name") or (item.get("pointer") or "#").removeprefix("#/").replace(
            "/", "."
        )
        where = "" if where in ("#", "") else where
        prefix = f"{item['location']} " if item["location"] != "body" else ""
        parts.append(f"{prefix}{where}: {item['detail']}" if where else str(item["detail"]))
    if len(items) > MAX_LISTED_ERRORS:
        parts.append(f"and {len(items) - MAX_LISTED_ERRORS} more (see 'errors')")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    """Register the exception handlers that turn every error into a problem response."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            kind=exc.kind,
            title=exc.title,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        raw = list(exc.errors())
        items = validation_errors(raw)
        if any(e.get("type") == "json_invalid" for e in raw):
            where = next((e.get("ctx", {}).get("error") for e in raw), None)
            detail = "the request body is not valid JSON" + (f" ({where})" if where else "")
            return problem_response(400, detail, kind="malformed-json", instance=request.url.path)
        if len(raw) == 1 and raw[0].get("type") == "missing" and tuple(raw[0]["loc"]) == ("body",):
            return problem_response(
                422,
                "the request body is empty; send a JSON object",
                kind="invalid-request",
                instance=request.url.path,
            )
        return problem_response(
            422,
            describe_errors(items),
            kind="invalid-request",
            instance=request.url.path,
            errors=items,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}; the API is described at /docs"
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path; a path
            # served by several routes (GET and POST /v1/tasks) allows all of theirs.
            allowed = _allowed_methods(request) or headers.get("Allow") or headers.get("allow")
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            if allowed:
                headers["Allow"] = allowed
            detail = f"{request.method} is not allowed on {request.url.path}" + (
                f"; use {allowed}" if allowed else ""
            )
        return problem_response(
            exc.status_code, detail, instance=request.url.path, headers=headers or None
        )

    @app.exception_handler(TaskNotFound)
    async def _missing(request: Request, exc: TaskNotFound) -> JSONResponse:
        return problem_response(404, f"no task {exc.args[0]!r}", instance=request.url.path)

    @app.exception_handler(SwarmError)
    async def _swarm(request: Request, exc: SwarmError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            status, str(exc), kind=_slug(type(exc).__name__), instance=request.url.path
        )

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError) -> JSONResponse:
        log.error("%s %s: Redis: %s", request.method, request.url.path, exc)
        return problem_response(
            503,
            f"Redis is unavailable ({type(exc).__name__}); retry shortly",
            kind="redis-unavailable",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after answering, so the traceback still reaches the log.
        return problem_response(
            500,
            "the server failed on this request; it is logged, and retrying will not help",
            instance=request.url.path,
        )
