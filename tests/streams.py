"""What the bus and consumer tests share: a test stream and group, and a handler whose effects
are counted in Redis so that a second effect is visible."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from swarm import names
from swarm.bus import Bus
from swarm.consumer import Consumer, Delivery
from swarm.messages import Envelope

STREAM = f"{names.PREFIX}:stream:test"
GROUP = f"{names.PREFIX}:test-group"


class Recorder:
    """A handler that counts its side effects in Redis, so double effects are visible."""

    def __init__(self, redis: Redis, *, work_s: float = 0.0, fail: bool = False) -> None:
        self.redis = redis
        self.work_s = work_s
        self.fail = fail
        self.seen: list[Delivery] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.seen.append(delivery)
        if self.work_s:
            await asyncio.sleep(self.work_s)
        if self.fail:
            raise RuntimeError("poison")
        await self.redis.incr(f"test:effect:{delivery.envelope.id}")


async def effect_count(redis: Redis, message: Envelope) -> int:
    return int(await redis.get(f"test:effect:{message.id}") or 0)


async def pending(redis: Redis) -> int:
    return int((await redis.xpending(STREAM, GROUP))["pending"])


def start(bus: Bus, handler: Recorder, **kwargs: object) -> Consumer:
    consumer = Consumer.of(bus, [STREAM], GROUP, handler, **kwargs)  # type: ignore[arg-type]
    consumer.start()
    return consumer


async def true(value: bool) -> bool:
    return value


async def exists_list(redis: Redis, key: str) -> bool:
    return bool(await redis.llen(key))


async def xlen(redis: Redis, stream: str, n: int) -> bool:
    return bool(await redis.exists(stream)) and await redis.xlen(stream) >= n
