"""What every route depends on: the app's services and settings, the caller (API keys), JSON
bodies."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from swarm.bus import Bus
from swarm.catalog import CatalogCache
from swarm.connections import RedisClient
from swarm.http.limits import StreamSlots
from swarm.http.problems import Problem
from swarm.settings import Settings
from swarm.tasks import (
    TaskStore,
)

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 128


@dataclass
class AppServices:
    redis: RedisClient
    store: TaskStore
    bus: Bus
    http: httpx.AsyncClient
    catalog: CatalogCache


async def _services(request: Request) -> AppServices:
    services: AppServices = request.app.state.services
    return services


Services = Annotated[AppServices, Depends(_services)]


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


async def json_only(
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


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(_settings)]


async def _streams(request: Request) -> StreamSlots:
    streams: StreamSlots = request.app.state.streams
    return streams


Streams = Annotated[StreamSlots, Depends(_streams)]
