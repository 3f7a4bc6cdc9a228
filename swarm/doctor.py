"""``swarm doctor``: check what swarm depends on, one clear line per problem."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from swarm.connections import connect, shown
from swarm.errors import ConfigurationError, RedisUnavailable
from swarm.settings import Settings

MIN_REDIS = (6, 2, 0)
"""XAUTOCLAIM, which crash recovery relies on, arrived in Redis 6.2."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


async def check_redis(settings: Settings) -> Check:
    try:
        client = await connect(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    except RedisUnavailable as exc:
        return Check(
            "redis",
            False,
            f"{exc}; start one with `redis-server` or set SWARM_REDIS_URL",
        )
    except ConfigurationError as exc:
        return Check("redis", False, str(exc))
    try:
        kind = "Redis Cluster" if isinstance(client, RedisCluster) else "Redis"
        info: Any = await client.info("server")  # a cluster client asks one node
    except (RedisError, OSError) as exc:
        return Check("redis", False, f"Redis at {shown(settings.redis_url)} failed INFO: {exc}")
    finally:
        await client.aclose()
    version = str(info.get("redis_version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    if parts < MIN_REDIS:
        return Check(
            "redis", False, f"Redis {version} is too old: swarm needs 6.2 or newer for XAUTOCLAIM"
        )
    return Check("redis", True, f"{kind} {version} at {shown(settings.redis_url)}")


async def check_vllm(url: str) -> Check:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"{url}/v1/models")
            response.raise_for_status()
            models = [m["id"] for m in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return Check(
            "vllm",
            False,
            f"vLLM at {url} is not answering ({type(exc).__name__}: {exc}); "
            "start it with `swarm serve-model` or set SWARM_VLLM_URLS",
        )
    return Check("vllm", True, f"vLLM at {url} serves {', '.join(models) or 'no models'}")


def check_adapters_dir(settings: Settings) -> Check:
    path = settings.adapters_dir
    if not path.exists():
        return Check(
            "adapters",
            False,
            f"adapters dir {path} does not exist; create it or set SWARM_ADAPTERS_DIR",
        )
    if not path.is_dir():
        return Check("adapters", False, f"adapters dir {path} is not a directory")
    folders = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    return Check(
        "adapters", True, f"{path.resolve()}: {len(folders)} folder(s) {', '.join(folders)}"
    )


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, concurrently where they touch the network."""
    network = await asyncio.gather(
        check_redis(settings), *(check_vllm(url) for url in settings.vllm_urls)
    )
    return [*network, check_adapters_dir(settings)]


def effective_settings(settings: Settings) -> dict[str, Any]:
    """Settings as ``SWARM_*`` names and values, secrets masked (a password in the Redis URL
    too)."""
    out: dict[str, Any] = {}
    for name, value in settings.model_dump().items():
        if not value and value != 0:
            value = ""
        elif name.endswith(("api_key", "api_keys")):
            value = "****"
        elif name in ("redis_url", "teacher_url"):
            value = shown(value)
        elif name == "vllm_urls":
            value = ",".join(shown(url) for url in value)
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[f"SWARM_{name.upper()}"] = value
    return out
