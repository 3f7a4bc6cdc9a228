"""A consumer in its own process, for crash tests: it marks each message started, then works slowly.

Usage: python crashable_consumer.py REDIS_URL STREAM GROUP NAME WORK_SECONDS HEARTBEAT_S
"""

from __future__ import annotations

import asyncio
import sys

from swarm.bus import Bus
from swarm.connections import connect
from swarm.consumer import Consumer, Delivery
from swarm.settings import Settings


async def main() -> None:
    url, stream, group, name, work_s, heartbeat_s = sys.argv[1:7]
    redis = await connect(url)
    bus = Bus(redis, settings=Settings(redis_url=url, heartbeat_timeout_s=float(heartbeat_s)))

    async def handler(delivery: Delivery) -> None:
        await redis.rpush("test:started", f"{name}:{delivery.envelope.id}")
        await asyncio.sleep(float(work_s))
        await redis.rpush("test:finished", f"{name}:{delivery.envelope.id}")

    await Consumer.of(bus, [stream], group, handler, name=name).run()


if __name__ == "__main__":
    asyncio.run(main())
