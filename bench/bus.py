"""Handoff round trip through the bus against a raw redis-py stream loop, same server, same run.

Each message is published at a fixed offered rate and timed from just before XADD until its ack
is written. The raw loop is the least a consumer group can do: XADD, XREADGROUP, XACK. The bus
adds envelopes (pydantic), the idempotency claim, heartbeats and the handled mark.

Usage: python bench/bus.py [--rate 1000] [--seconds 5] [--redis-url redis://127.0.0.1:6379/14]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from redis.asyncio import Redis

from swarm import names
from swarm.bus import Bus
from swarm.consumer import Consumer, Delivery
from swarm.messages import StepRequest, StepSpec, envelope
from swarm.settings import Settings

STREAM = f"{names.PREFIX}:bench:stream"
GROUP = f"{names.PREFIX}:bench:group"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies_s: list[float], elapsed_s: float) -> dict[str, float]:
    ms = [x * 1000 for x in latencies_s]
    return {
        "messages": len(ms),
        "throughput_per_s": round(len(ms) / elapsed_s, 1),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
    }


async def paced(rate: float, count: int, send: Any) -> None:
    """Call ``send(i)`` ``count`` times at ``rate`` per second, on schedule, without bursts."""
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i)


async def run_raw(redis: Redis, rate: float, count: int) -> dict[str, float]:
    await redis.delete(STREAM)
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    latencies: list[float] = []
    done = asyncio.Event()

    async def consume() -> None:
        while len(latencies) < count:
            response = await redis.xreadgroup(GROUP, "raw", {STREAM: ">"}, count=16, block=1000)
            for _stream, entries in response or []:
                for entry_id, fields in entries:
                    sent = json.loads(fields[b"m"])["sent"]
                    await redis.xack(STREAM, GROUP, entry_id)
                    latencies.append(time.perf_counter() - sent)
        done.set()

    async def send(i: int) -> None:
        payload = json.dumps({"i": i, "sent": time.perf_counter()})
        await redis.xadd(STREAM, {"m": payload}, maxlen=100_000, approximate=True)

    consumer = asyncio.create_task(consume())
    started = time.perf_counter()
    await paced(rate, count, send)
    await asyncio.wait_for(done.wait(), timeout=60)
    elapsed = time.perf_counter() - started
    await consumer
    return summary(latencies, elapsed)


async def run_bus(redis: Redis, settings: Settings, rate: float, count: int) -> dict[str, float]:
    await redis.delete(STREAM)
    bus = Bus(redis, settings=settings)
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        return None

    def settled(delivery: Delivery) -> None:
        latencies.append(time.perf_counter() - sent_at.pop(delivery.envelope.id))
        if len(latencies) == count:
            done.set()

    consumer = Consumer.of(bus, [STREAM], GROUP, handle, on_settled=settled)
    consumer.start()
    step = StepSpec(id="s1", specialist="pii")

    async def send(i: int) -> None:
        message = envelope(f"task-{i}", StepRequest(step=step, task_input={"text": "hello"}))
        sent_at[message.id] = time.perf_counter()
        await bus.publish(STREAM, message)

    started = time.perf_counter()
    await paced(rate, count, send)
    await asyncio.wait_for(done.wait(), timeout=60)
    elapsed = time.perf_counter() - started
    await consumer.close()
    return summary(latencies, elapsed)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="offered messages per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    redis = Redis.from_url(args.redis_url)
    settings = Settings(redis_url=args.redis_url)
    await redis.flushdb()
    try:
        # Warm both paths (connections, imports, JIT-free but cache-warm), then measure.
        await run_raw(redis, args.rate, 200)
        await redis.flushdb()
        await run_bus(redis, settings, args.rate, 200)
        await redis.flushdb()
        raw = await run_raw(redis, args.rate, count)
        await redis.flushdb()
        bus = await run_bus(redis, settings, args.rate, count)
    finally:
        await redis.flushdb()
        await redis.aclose()
    ratio = bus["p50_ms"] / raw["p50_ms"]
    figures = {
        "bench": "bus",
        "offered_rate_per_s": args.rate,
        "seconds": args.seconds,
        "raw": raw,
        "bus": bus,
        "p50_ratio_bus_to_raw": round(ratio, 3),
        "p99_ratio_bus_to_raw": round(bus["p99_ms"] / raw["p99_ms"], 3),
        "target_p50_ratio_le_1_5": ratio <= 1.5,
        "target_bus_p99_le_5ms": bus["p99_ms"] <= 5.0,
    }
    print(f"raw loop: {raw}")
    print(f"bus:      {bus}")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
