"""The bus, publishing side, against a real Redis server: deduplicated publish, trimming that
keeps accepted work, dead letters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from swarm import names
from swarm.bus import PAYLOAD_FIELD, Bus
from swarm.consumer import wait_until
from swarm.messages import Cancel, TaskEvent, envelope
from swarm.settings import Settings
from swarm.tasks import TaskRecord, TaskStore

from streams import STREAM, Recorder, effect_count, pending, start, true

pytestmark = pytest.mark.redis_backends


async def test_publish_trims_the_stream_approximately(redis: Redis) -> None:
    bus = Bus(redis, settings=Settings(stream_maxlen=100))
    for i in range(1000):
        await bus.publish(STREAM, envelope(f"t{i}", Cancel()))
    assert 100 <= await redis.xlen(STREAM) < 1000


async def test_accepted_tasks_are_trimmed_only_once_every_group_is_done_with_them(
    redis: Redis,
) -> None:
    bus = Bus(redis, settings=Settings(stream_maxlen=2))
    stream, group = names.TASKS_STREAM, names.ORCHESTRATORS_GROUP
    for n in range(8):
        await bus.publish(stream, envelope(f"t{n}", Cancel()))
    assert await redis.xlen(stream) == 8  # unread: nothing trimmed at publish
    assert await bus.trim_read(stream) == 0  # no group has read any
    await bus.ensure_group(stream, group)
    read: Any = await redis.xreadgroup(group, "c1", {stream: ">"}, count=5)
    ids = [entry_id for entry_id, _fields in read[0][1]]
    await redis.xack(stream, group, ids[0], ids[1], ids[3], ids[4])  # the third still pending
    assert await bus.trim_read(stream) == 2  # the two before the pending one
    remaining = [entry_id for entry_id, _ in await redis.xrange(stream)]
    assert remaining[0] == ids[2] and len(remaining) == 6
    await redis.xack(stream, group, ids[2])
    assert await bus.trim_read(stream) == 3  # up to the last read; the three unread stay
    assert await redis.xlen(stream) == 3


async def test_a_republished_message_has_no_second_effect(
    redis: Redis, bus_settings: Settings
) -> None:
    bus = Bus(redis, settings=bus_settings)
    handler = Recorder(redis)
    consumer = start(bus, handler)
    message = envelope("t1", Cancel())
    assert await bus.publish(STREAM, message)
    assert await bus.publish(STREAM, message) is None  # a producer retrying after a timeout
    other = f"{names.PREFIX}:stream:other"
    assert await bus.publish(other, message)  # another stream is another effect

    assert await wait_until(lambda: true(consumer.stats.handled == 1), 5)
    await asyncio.sleep(0.2)
    await consumer.close()
    assert await effect_count(redis, message) == 1
    assert consumer.stats.handled == 1
    assert await redis.xlen(STREAM) == 1
    assert await pending(redis) == 0


async def test_dead_lettering_leaves_ended_and_unknown_tasks_alone(redis: Redis) -> None:
    # A late dead-letter must not log a second end beside a finished task, nor make a record
    # (with no TTL) for a task that expired or was never stored.
    store = TaskStore(redis)
    await store.create(TaskRecord(id="done", input="x"))

    def complete(task: TaskRecord) -> list[TaskEvent]:
        task.state = "completed"
        return [TaskEvent(kind="state", state="completed")]

    await store.update("done", complete)
    logged = await redis.xlen(names.task_events_stream("done"))
    for task_id in ("done", "gone"):
        await Bus(redis).dead_letter(
            stream=STREAM,
            group="g",
            entry_id="1-0",
            fields={PAYLOAD_FIELD.encode(): envelope(task_id, Cancel()).encode()},
            reason="delivered 5 times without success",
            deliveries=5,
        )
    assert (await store.get("done")).state == "completed"
    assert await redis.hget(names.task_key("done"), "state") == b"completed"
    assert await redis.xlen(names.task_events_stream("done")) == logged
    assert not await redis.exists(names.task_key("gone"), names.task_events_stream("gone"))
    assert await redis.xlen(names.DEAD_LETTER_STREAM) == 2  # both kept for inspection
