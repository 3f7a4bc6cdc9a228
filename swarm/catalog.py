"""The specialist catalog as every process sees it: records the registry publishes to Redis.

The registry (``specialists/registry.py``) is the only writer. The API, planner and workers read
through :func:`list_specialists` and :func:`get_specialist`.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from swarm import names
from swarm.messages import utcnow

SpecialistStatus = Literal["ready", "rejected"]


class SpecialistRecord(BaseModel):
    """One specialist: its manifest, which LoRA serves it, and whether it can be used."""

    model_config = ConfigDict(extra="ignore")

    name: str
    version: str | None = None
    status: SpecialistStatus
    description: str = ""
    lora_name: str | None = Field(
        None, description="Model name to request from vLLM; None means the base model."
    )
    manifest: dict[str, Any] | None = Field(None, description="The parsed specialist.yaml.")
    reason: str | None = Field(None, description="Why the folder was rejected.")
    eval_summary: dict[str, Any] | None = Field(None, description="From eval.json, if shipped.")
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def input_schema(self) -> dict[str, Any]:
        return dict((self.manifest or {}).get("input_schema") or {})

    @property
    def output_schema(self) -> dict[str, Any]:
        return dict((self.manifest or {}).get("output_schema") or {})


async def list_specialists(redis: Redis) -> list[SpecialistRecord]:
    """Every registered specialist, ready or rejected, sorted by name."""
    raw = await redis.hgetall(names.SPECIALISTS_KEY)
    records = [SpecialistRecord.model_validate_json(value) for value in raw.values()]
    return sorted(records, key=lambda r: r.name)


async def get_specialist(redis: Redis, name: str) -> SpecialistRecord | None:
    """One specialist's record, or None if no folder of that name is registered."""
    raw = await redis.hget(names.SPECIALISTS_KEY, name)
    return SpecialistRecord.model_validate_json(raw) if raw else None


async def put_specialist(redis: Redis, record: SpecialistRecord) -> None:
    """Publish one record and announce the change (the registry's write path)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(names.SPECIALISTS_KEY, record.name, record.model_dump_json())
        pipe.publish(names.SPECIALISTS_CHANNEL, record.name)
        await pipe.execute()


async def remove_specialist(redis: Redis, name: str) -> None:
    """Unregister one specialist and announce the change."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(names.SPECIALISTS_KEY, name)
        pipe.publish(names.SPECIALISTS_CHANNEL, name)
        await pipe.execute()


class CatalogCache:
    """The catalog as of at most ``ttl_s`` ago: hot paths read it per step without parsing
    every manifest from Redis each time. A registry change is seen within ``ttl_s``."""

    def __init__(self, redis: Redis, *, ttl_s: float = 1.0) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._records: dict[str, SpecialistRecord] = {}
        self._fetched_at = float("-inf")

    async def all(self) -> dict[str, SpecialistRecord]:
        now = time.monotonic()
        if now - self._fetched_at > self.ttl_s:
            self._records = {r.name: r for r in await list_specialists(self.redis)}
            self._fetched_at = now
        return self._records

    async def get(self, name: str) -> SpecialistRecord | None:
        return (await self.all()).get(name)
