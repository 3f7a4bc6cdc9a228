"""The consumer against a real Redis server: delivery, idempotency, crash recovery, the
delivery cap, graceful shutdown, batched settles."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from swarm import names
from swarm.bus import PAYLOAD_FIELD, Bus
from swarm.consumer import HANDLED, Consumer, Delivery, Reject, wait_until
from swarm.messages import Cancel, Envelope, TaskEvent, envelope
from swarm.settings import Settings
from swarm.tasks import TaskRecord, TaskStore

from streams import GROUP, STREAM, Recorder, effect_count, exists_list, pending, start, true, xlen

pytestmark = pytest.mark.redis_backends


class CountingScript:
    """Wraps a registered script: counts its calls and can fail the first ``fail`` of them."""

    def __init__(self, script: Any, *, fail: int = 0) -> None:
        self.script = script
        self.fail = fail
        self.calls: list[int] = []

    async def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        self.calls.append(len(keys) // 2)
        if len(self.calls) <= self.fail:
            raise RedisConnectionError("injected: Redis went away mid-settle")
        return await self.script(keys=keys, args=args)


async def test_publish_consume_and_ack(redis: Redis, bus_settings: Settings) -> None:
    bus = Bus(redis, settings=bus_settings)
    handler = Recorder(redis)
    consumer = start(bus, handler)
    messages = [envelope(f"t{i}", Cancel()) for i in range(20)]
    for message in messages:
        await bus.publish(STREAM, message)

    assert await wait_until(lambda: true(consumer.stats.handled == 20), 5)
    await consumer.close()
    assert sorted(d.envelope.id for d in handler.seen) == sorted(m.id for m in messages)
    assert all(d.deliveries == 1 for d in handler.seen)
    assert await pending(redis) == 0
    assert not await redis.exists(names.heartbeat_key(GROUP, consumer.name))


async def test_redelivery_after_handling_but_before_ack_has_no_second_effect(
    redis: Redis, bus_settings: Settings
) -> None:
    bus = Bus(redis, settings=bus_settings)
    message = envelope("t1", Cancel())
    await bus.ensure_group(STREAM, GROUP)
    await bus.publish(STREAM, message)
    # A consumer that handled the message and died before its XACK.
    await redis.xreadgroup(GROUP, "dead-consumer", {STREAM: ">"}, count=1)
    await redis.incr(f"test:effect:{message.id}")
    await redis.set(names.handled_key(STREAM, GROUP, message.id), HANDLED)

    handler = Recorder(redis)
    consumer = start(bus, handler)
    assert await wait_until(lambda: true(consumer.stats.duplicates == 1), 10)
    await consumer.close()
    assert handler.seen == []
    assert await effect_count(redis, message) == 1
    assert await pending(redis) == 0


async def test_a_killed_consumers_message_is_finished_by_another_within_the_timeout(
    redis: Redis, redis_url: str, bus_settings: Settings
) -> None:
    bus = Bus(redis, settings=bus_settings)
    await bus.ensure_group(STREAM, GROUP)
    timeout_s = bus_settings.heartbeat_timeout_s
    script = Path(__file__).with_name("crashable_consumer.py")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        redis_url,
        STREAM,
        GROUP,
        "doomed",
        "60",
        str(timeout_s),
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        message = envelope("t1", Cancel())
        await bus.publish(STREAM, message)
        assert await wait_until(lambda: exists_list(redis, "test:started"), 30)
        rescuer_handler = Recorder(redis)
        rescuer = start(bus, rescuer_handler)
        await asyncio.sleep(timeout_s)  # the doomed consumer is alive: nothing is taken
        assert rescuer.stats.reclaimed == 0

        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed_at = time.monotonic()
        assert await wait_until(lambda: true(rescuer.stats.handled == 1), timeout_s * 3)
        recovered_in = time.monotonic() - killed_at
        await rescuer.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()

    # The rescuer starts when the doomed consumer's last beat is older than the timeout; it
    # polls three times per timeout, so recovery takes at most about 1.34 timeouts.
    assert recovered_in <= timeout_s * 1.34 + 0.5, recovered_in
    assert rescuer_handler.seen[0].envelope.id == message.id
    assert rescuer_handler.seen[0].deliveries == 2
    assert await effect_count(redis, message) == 1
    assert await pending(redis) == 0


async def test_a_live_but_slow_consumer_keeps_its_message(
    redis: Redis, bus_settings: Settings
) -> None:
    bus = Bus(redis, settings=bus_settings)
    slow = start(bus, Recorder(redis, work_s=bus_settings.heartbeat_timeout_s * 3), name="slow")
    message = envelope("t1", Cancel())
    await bus.publish(STREAM, message)
    assert await wait_until(lambda: true(len(slow.handler.seen) == 1), 5)  # type: ignore[attr-defined]
    other = start(bus, Recorder(redis), name="other")

    assert await wait_until(lambda: true(slow.stats.handled == 1), 10)
    await asyncio.gather(slow.close(), other.close())
    assert other.stats.reclaimed == 0 and other.stats.handled == 0
    assert slow.stats.lost == 0
    assert await effect_count(redis, message) == 1


async def test_a_poison_message_is_dead_lettered_after_max_deliveries(
    redis: Redis, bus_settings: Settings
) -> None:
    bus = Bus(redis, settings=bus_settings)
    await TaskStore(redis).create(TaskRecord(id="task-9", input="x"))
    handler = Recorder(redis, fail=True)
    consumer = start(bus, handler)
    message = envelope("task-9", Cancel())
    await bus.publish(STREAM, message)

    assert await wait_until(lambda: xlen(redis, names.DEAD_LETTER_STREAM, 1), 15)
    await consumer.close()
    assert len(handler.seen) == bus_settings.max_deliveries == 3
    assert [d.deliveries for d in handler.seen] == [1, 2, 3]

    [(_id, dead)] = await redis.xrange(names.DEAD_LETTER_STREAM)
    assert dead[b"reason"].decode().startswith("delivered 3 times without success")
    assert "RuntimeError: poison" in dead[b"reason"].decode()
    history = json.loads(dead[b"history"])
    assert [h["event"] for h in history] == [
        "failed",
        "reclaimed",
        "failed",
        "reclaimed",
        "failed",
    ]
    assert Envelope.decode(dead[b"payload"]) == message
    assert await pending(redis) == 0

    assert await redis.hgetall(names.BUS_STATS_KEY) == {
        f"reclaimed|{STREAM}".encode(): b"2",
        f"dead_lettered|{STREAM}".encode(): b"1",
    }
    task = await redis.hgetall(names.task_key("task-9"))
    assert task[b"state"] == b"failed"
    assert b"delivered 3 times" in task[b"reason"]
    loaded = await TaskStore(redis).get("task-9")
    assert (loaded.state, loaded.reason) == ("failed", task[b"reason"].decode())
    [_submitted, (_eid, fields)] = await redis.xrange(names.task_events_stream("task-9"))
    event = Envelope.decode(fields[PAYLOAD_FIELD.encode()]).body
    assert isinstance(event, TaskEvent) and event.state == "failed"
    assert await redis.hget(names.TASK_STATES_KEY, "failed") == b"1"


async def test_a_message_that_kills_every_consumer_is_dead_lettered(
    redis: Redis, bus_settings: Settings
) -> None:
    bus = Bus(redis, settings=bus_settings)
    await bus.ensure_group(STREAM, GROUP)
    await TaskStore(redis).create(TaskRecord(id="task-7", input="x"))
    message = envelope("task-7", Cancel())
    await bus.publish(STREAM, message)
    for n in range(bus_settings.max_deliveries):
        # Each delivery goes to a consumer that dies without a trace.
        claimed = await redis.xautoclaim(STREAM, GROUP, f"victim-{n}", 0) if n else None
        if not n:
            await redis.xreadgroup(GROUP, "victim-0", {STREAM: ">"})
        assert n == 0 or claimed[1]
    survivor_handler = Recorder(redis)
    survivor = start(bus, survivor_handler)
    assert await wait_until(lambda: xlen(redis, names.DEAD_LETTER_STREAM, 1), 10)
    await survivor.close()
    assert survivor_handler.seen == []
    [(_id, dead)] = await redis.xrange(names.DEAD_LETTER_STREAM)
    assert dead[b"reason"] == b"delivered 3 times without being acknowledged"
    assert (await redis.hgetall(names.task_key("task-7")))[b"state"] == b"failed"


async def test_a_handler_can_reject_a_message_outright(
    redis: Redis, bus_settings: Settings
) -> None:
    bus = Bus(redis, settings=bus_settings)

    async def reject(delivery: Delivery) -> None:
        raise Reject("specialist 'nope' is not registered")

    consumer = Consumer.of(bus, [STREAM], GROUP, reject)
    consumer.start()
    await bus.publish(STREAM, envelope("t1", Cancel()))
    assert await wait_until(lambda: xlen(redis, names.DEAD_LETTER_STREAM, 1), 5)
    await consumer.close()
    [(_id, dead)] = await redis.xrange(names.DEAD_LETTER_STREAM)
    assert dead[b"reason"] == b"rejected: specialist 'nope' is not registered"
    assert dead[b"deliveries"] == b"1"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({PAYLOAD_FIELD: b"{not json"}, "invalid message at payload: Invalid JSON"),
        ({PAYLOAD_FIELD: b'{"task_id": "t5", "body": {"type": "x"}}'}, "invalid message at body"),
        ({PAYLOAD_FIELD: b"\xff\xfe"}, "invalid message"),
        ({"other": b"1"}, "entry has no 'm' field"),
    ],
)
async def test_malformed_payloads_are_dead_lettered_and_the_consumer_carries_on(
    redis: Redis, bus_settings: Settings, fields: dict[str, bytes], reason: str
) -> None:
    bus = Bus(redis, settings=bus_settings)
    handler = Recorder(redis)
    consumer = start(bus, handler)
    await redis.xadd(STREAM, fields)  # type: ignore[arg-type]
    good = envelope("t1", Cancel())
    await bus.publish(STREAM, good)

    assert await wait_until(lambda: true(consumer.stats.handled == 1), 5)
    await consumer.close()
    assert [d.envelope.id for d in handler.seen] == [good.id]
    [(_id, dead)] = await redis.xrange(names.DEAD_LETTER_STREAM)
    assert dead[b"reason"].decode().startswith(reason)
    assert await pending(redis) == 0


async def test_graceful_shutdown_finishes_and_acks_in_flight_work(
    redis: Redis, bus_settings: Settings
) -> None:
    bus = Bus(redis, settings=bus_settings)
    handler = Recorder(redis, work_s=0.5)
    consumer = start(bus, handler)
    messages = [envelope(f"t{i}", Cancel()) for i in range(3)]
    for message in messages:
        await bus.publish(STREAM, message)
    assert await wait_until(lambda: true(len(handler.seen) == 3), 5)

    await consumer.close()
    assert consumer.stats.handled == 3
    assert await pending(redis) == 0
    later = envelope("t9", Cancel())
    await bus.publish(STREAM, later)
    await asyncio.sleep(0.2)
    assert len(handler.seen) == 3  # stopped consumers read nothing more


async def test_concurrency_is_bounded(redis: Redis, bus_settings: Settings) -> None:
    bus = Bus(redis, settings=bus_settings)
    running = 0
    peak = 0

    async def handler(delivery: Delivery) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    consumer = Consumer.of(bus, [STREAM], GROUP, handler, concurrency=3)
    consumer.start()
    for i in range(12):
        await bus.publish(STREAM, envelope(f"t{i}", Cancel()))
    assert await wait_until(lambda: true(consumer.stats.handled == 12), 10)
    await consumer.close()
    assert peak == 3


async def test_handlers_that_finish_together_are_settled_in_one_round_trip(
    redis: Redis, bus_settings: Settings
) -> None:
    bus = Bus(redis, settings=bus_settings)
    release = asyncio.Event()
    arrived = 0

    async def handler(delivery: Delivery) -> None:
        nonlocal arrived
        arrived += 1
        await release.wait()

    consumer = Consumer.of(bus, [STREAM], GROUP, handler, concurrency=20)
    settle = consumer.settle_script = CountingScript(consumer.settle_script)
    consumer.start()
    messages = [envelope(f"t{i}", Cancel()) for i in range(20)]
    for message in messages:
        await bus.publish(STREAM, message)
    assert await wait_until(lambda: true(arrived == 20), 10)
    release.set()
    assert await wait_until(lambda: true(consumer.stats.handled == 20), 10)
    await consumer.close()
    assert sum(settle.calls) == 20
    assert len(settle.calls) <= 2  # not one round trip per entry
    assert await pending(redis) == 0
    for message in messages:
        assert await redis.get(names.handled_key(STREAM, GROUP, message.id)) == HANDLED


async def test_a_settle_that_fails_leaves_its_entries_pending_until_one_succeeds(
    redis: Redis, bus_settings: Settings
) -> None:
    bus = Bus(redis, settings=bus_settings)
    handler = Recorder(redis)
    consumer = Consumer.of(bus, [STREAM], GROUP, handler)
    settle = consumer.settle_script = CountingScript(consumer.settle_script, fail=1)
    consumer.start()
    message = envelope("t1", Cancel())
    await bus.publish(STREAM, message)
    assert await wait_until(lambda: true(len(settle.calls) == 1), 10)
    assert await pending(redis) == 1
    assert await redis.get(names.handled_key(STREAM, GROUP, message.id)) != HANDLED
    # Unsettled means unacked: reclaimed after the heartbeat timeout and run again (the
    # at-least-once redelivery every handler is written for), then settled.
    assert await wait_until(lambda: true(consumer.stats.handled == 1), 15)
    await consumer.close()
    assert len(handler.seen) == 2 and handler.seen[1].deliveries == 2
    assert await pending(redis) == 0
