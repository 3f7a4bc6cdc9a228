"""The catalog cache against a real Redis server."""

from __future__ import annotations

from redis.asyncio import Redis

from swarm import names
from swarm.catalog import CatalogCache, SpecialistRecord, put_specialist

from adapterfactory import manifest_of


async def test_fresh_reads_every_time_but_parses_only_what_changed(redis: Redis) -> None:
    for name in ("pii", "sql"):
        record = SpecialistRecord(name=name, status="ready", manifest=manifest_of(name))
        await put_specialist(redis, record)
    cache = CatalogCache(redis)
    first = await cache.fresh()
    assert list(first) == ["pii", "sql"]
    pii = first["pii"]
    # Hand edits that do not move the version: fresh() still sees them at once.
    changed = SpecialistRecord(name="sql", status="rejected", reason="edited by hand")
    await redis.hset(names.SPECIALISTS_KEY, "sql", changed.model_dump_json())
    again = await cache.fresh()
    assert again["pii"] is pii  # unchanged bytes: the parsed record is kept
    assert again["sql"].status == "rejected" and again["sql"].reason == "edited by hand"
    await redis.hdel(names.SPECIALISTS_KEY, "pii")
    assert list(await cache.fresh()) == ["sql"]
