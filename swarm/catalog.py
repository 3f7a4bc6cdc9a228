"""The specialist catalog as every process sees it: records the registry publishes to Redis.

The registry (``specialists/registry.py``) is the only writer. The API, planner and workers read
through :func:`list_specialists` and :func:`get_specialist`, or, on hot paths, through a
:class:`CatalogCache`. Every write bumps a version counter, so a reader can tell in one small
round trip whether its copy is still current.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from jsonschema.protocols import Validator
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from swarm import names
from swarm.connections import RedisClient, text
from swarm.manifest import Manifest
from swarm.messages import utcnow
from swarm.schemas import schema_validator

SpecialistStatus = Literal["ready", "rejected"]
MAX_TRUSTED_AGE_S = 30.0
"""How long :meth:`CatalogCache.current` trusts an unchanged version before reading anyway, for
writes that did not move the counter (a hand-edited hash, a Redis restored from a backup)."""


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
    manifest: Manifest | None = Field(None, description="The validated specialist.yaml.")
    reason: str | None = Field(None, description="Why the folder was rejected.")
    eval_summary: dict[str, Any] | None = Field(None, description="From eval.json, if shipped.")
    updated_at: datetime = Field(default_factory=utcnow)
    _validators: dict[str, Validator] = PrivateAttr(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.manifest.input_schema if self.manifest else {}

    @property
    def output_schema(self) -> dict[str, Any]:
        return self.manifest.output_schema if self.manifest else {}

    @property
    def input_validator(self) -> Validator:
        """The compiled validator of :attr:`input_schema` (kept with this record)."""
        return self._validator("input_schema")

    @property
    def output_validator(self) -> Validator:
        """The compiled validator of :attr:`output_schema` (kept with this record)."""
        return self._validator("output_schema")

    def _validator(self, which: str) -> Validator:
        validator = self._validators.get(which)
        if validator is None:
            schema = self.input_schema if which == "input_schema" else self.output_schema
            validator = self._validators[which] = schema_validator(schema)
        return validator


async def list_specialists(redis: RedisClient) -> list[SpecialistRecord]:
    """Every registered specialist, ready or rejected, sorted by name."""
    raw = await redis.hgetall(names.SPECIALISTS_KEY)
    records = [SpecialistRecord.model_validate_json(value) for value in raw.values()]
    return sorted(records, key=lambda r: r.name)


async def get_specialist(redis: RedisClient, name: str) -> SpecialistRecord | None:
    """One specialist's record, or None if no folder of that name is registered."""
    raw = await redis.hget(names.SPECIALISTS_KEY, name)
    return SpecialistRecord.model_validate_json(raw) if raw else None


async def put_specialist(redis: RedisClient, record: SpecialistRecord) -> None:
    """Publish one record and announce the change (the registry's write path)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(names.SPECIALISTS_KEY, record.name, record.model_dump_json())
        pipe.incr(names.SPECIALISTS_VERSION_KEY)
        await pipe.execute()
    # Not pipelined: a cluster pipeline refuses PUBLISH, which has no key.
    await redis.publish(names.SPECIALISTS_CHANNEL, record.name)


async def remove_specialist(redis: RedisClient, name: str) -> None:
    """Unregister one specialist and announce the change."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(names.SPECIALISTS_KEY, name)
        pipe.incr(names.SPECIALISTS_VERSION_KEY)
        await pipe.execute()
    await redis.publish(names.SPECIALISTS_CHANNEL, name)


class SpecialistOut(BaseModel):
    """A registered specialist; a rejected one says why."""

    name: str
    version: str | None = None
    status: str = Field(description="'ready', or 'rejected' (see reason).")
    description: str = ""
    reason: str | None = Field(None, description="Why the registry rejected it.")
    eval_summary: dict[str, Any] | None = Field(None, description="Its shipped eval figures.")
    input_schema: dict[str, Any] | None = Field(None, description="What a step's input holds.")

    @classmethod
    def of(cls, record: SpecialistRecord) -> SpecialistOut:
        return cls(
            name=record.name,
            version=record.version,
            status=record.status,
            description=record.description,
            reason=record.reason,
            eval_summary=record.eval_summary,
            input_schema=record.input_schema if record.manifest else None,
        )


class CatalogCache:
    """The catalog, cached: hot paths read it per step without parsing every manifest each time.

    :meth:`all` serves a copy at most ``ttl_s`` old (no round trip in between); :meth:`current`
    costs one ``GET`` of the catalog version and re-reads only when a write moved it. Either way
    only changed records are parsed again, so an unchanged record keeps its compiled schemas.
    """

    def __init__(self, redis: RedisClient, *, ttl_s: float = 1.0) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._records: dict[str, SpecialistRecord] = {}
        self._raw: dict[Any, Any] = {}
        self._fetched_at = float("-inf")
        self._version: Any = None

    async def all(self) -> dict[str, SpecialistRecord]:
        """The catalog as of at most ``ttl_s`` ago: name -> record."""
        now = time.monotonic()
        if now - self._fetched_at > self.ttl_s:
            await self._fetch()
            self._fetched_at = now
        return self._records

    async def current(self) -> dict[str, SpecialistRecord]:
        """The catalog as it is now (one small round trip unless it changed)."""
        version = await self.redis.get(names.SPECIALISTS_VERSION_KEY)
        # No version key: written by something that does not count writes; always re-read.
        stale = time.monotonic() - self._fetched_at > MAX_TRUSTED_AGE_S
        if version is None or version != self._version or stale:
            await self._fetch()
            self._version = version
            self._fetched_at = time.monotonic()
        return self._records

    async def fresh(self) -> dict[str, SpecialistRecord]:
        """The catalog read now, whatever the version says: one ``HGETALL``, as
        :func:`list_specialists`, but an unchanged record is not parsed (validated) again."""
        await self._fetch()
        return self._records

    async def get(self, name: str) -> SpecialistRecord | None:
        return (await self.all()).get(name)

    async def _fetch(self) -> None:
        raw: dict[Any, Any] = await self.redis.hgetall(names.SPECIALISTS_KEY)
        records = {}
        for key, value in raw.items():
            record = self._records.get(text(key))
            if record is None or self._raw.get(key) != value:
                record = SpecialistRecord.model_validate_json(value)
            records[record.name] = record
        self._records = dict(sorted(records.items()))
        self._raw = raw
