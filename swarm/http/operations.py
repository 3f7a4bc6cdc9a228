"""The operations routes: specialists, liveness, readiness, metrics, the A2A agent card."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from redis.exceptions import RedisError

from swarm import metrics
from swarm.catalog import SpecialistOut
from swarm.connections import RedisClient, shown
from swarm.http import agentcard, problems
from swarm.http.bodies import Health, Readiness
from swarm.http.deps import AppSettings, Owner, Services
from swarm.http.problems import Problem

log = logging.getLogger(__name__)

router = APIRouter()


@router.get(
    "/v1/specialists",
    response_model=list[SpecialistOut],
    tags=["specialists"],
    summary="List specialists",
    responses=problems.responses(401, 503),
)
async def specialists(_owner: Owner, services: Services) -> list[SpecialistOut]:
    """Every specialist: version, status (ready or rejected, with why), eval summary."""
    return [SpecialistOut.of(r) for r in (await services.catalog.current()).values()]


@router.get("/healthz", tags=["operations"], response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """The process is up (it checks nothing else)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    tags=["operations"],
    response_model=Readiness,
    summary="Readiness",
    responses=problems.responses(503),
)
async def readyz(services: Services, settings: AppSettings) -> Readiness:
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


@router.get(
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


@router.get(
    "/.well-known/agent-card.json",
    tags=["operations"],
    summary="A2A agent card",
    responses=problems.responses(503),
)
async def agent_card(request: Request, services: Services, settings: AppSettings) -> dict[str, Any]:
    """The swarm as an A2A agent: each ready specialist a skill, with its input and output
    media types and, with keys, the bearer scheme. Open to anyone, like the OpenAPI
    document; it follows the registry."""
    records = await services.catalog.current()
    return agentcard.agent_card(records, str(request.base_url), secured=bool(settings.api_keys))


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
