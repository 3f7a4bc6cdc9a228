"""The Redis Streams bus, consuming side: read in groups, run a handler, never lose a message.

Guarantees, and how they are kept:

* **At-least-once, idempotent.** A handler runs before its message is acknowledged, so a crash
  means redelivery. After a handler succeeds, the message id is marked handled and acked in one
  transaction (the entries of handlers that finish together share one); a later delivery of a
  handled id is acked without running the handler again.
* **Crash recovery by heartbeat, without stealing from the living.** Each consumer renews a
  heartbeat key and, on the same beat, resets the idle time of the entries it is still working on
  (an atomic script that touches only entries it still owns). Reclaimers run ``XAUTOCLAIM`` with a
  minimum idle time of the heartbeat timeout, so only the entries of a consumer that stopped
  beating (killed, hung, partitioned) are ever taken. A live worker in a ten-minute model call
  keeps its message.
* **Delivery cap.** An entry delivered ``max_deliveries`` times without success goes to the
  dead-letter stream with its delivery history (:meth:`swarm.bus.Bus.dead_letter`), and its task
  is marked failed with the reason.
* **Bad payloads never reach handlers.** An unknown or invalid message is dead-lettered with the
  parse error, and the consumer carries on.
* **Graceful shutdown.** ``stop()`` stops reading, lets in-flight handlers finish and ack within a
  bounded drain time, then removes the heartbeat. Whatever is still unfinished stays pending and
  is reclaimed by another consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from swarm import names
from swarm.bus import PAYLOAD_FIELD, Bus
from swarm.connections import OUTAGE_ERRORS, Outage, RedisClient, text
from swarm.errors import InvalidMessage
from swarm.messages import Envelope, utcnow

log = logging.getLogger(__name__)

HISTORY_TTL_S = 7 * 86_400
_BUSY = b"busy"
HANDLED = b"done"

# Touch (reset the idle time of) the given entries, but only those this consumer still owns:
# XCLAIM with JUSTID does not count as a delivery, and checking ownership first in the same
# script means a consumer that lost an entry to a reclaimer never takes it back.
_TOUCH_SCRIPT = """
local owned = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    owned[#owned + 1] = ARGV[i]
  end
end
return owned
"""


# Mark message ids handled and acknowledge their entries, atomically, in one round trip.
# KEYS: (handled key, stream) per entry. ARGV: the handled mark, its ttl, the group, then the
# entry ids in the same order.
_SETTLE_SCRIPT = """
for i = 1, #ARGV - 3 do
  redis.call('SET', KEYS[2 * i - 1], ARGV[1], 'EX', ARGV[2])
  redis.call('XACK', KEYS[2 * i], ARGV[3], ARGV[3 + i])
end
return #ARGV - 3
"""
SETTLE_BATCH = 256
"""The most entries one settle script marks and acks."""


class Reject(Exception):
    """Raise from a handler to dead-letter the message now, with this reason, without retry."""


class Retry(Exception):
    """Raise from a handler to have the message delivered again later (counts as a delivery)."""


@dataclass(frozen=True)
class Delivery:
    """One delivery of one stream entry to a handler."""

    stream: str
    entry_id: str
    envelope: Envelope
    deliveries: int
    """How many times this entry has been delivered, this time included."""


Handler = Callable[[Delivery], Awaitable[None]]
SettledHook = Callable[[Delivery], None]
"""Called after a delivery's handler succeeded and its ack is written (for metrics)."""


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    failed: int = 0
    reclaimed: int = 0
    dead_lettered: int = 0
    lost: int = 0
    """Entries taken over by another consumer while this one still worked on them."""


def consumer_name() -> str:
    """A name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class _Settler:
    """Marks handled entries and acks them, many per round trip.

    A handler that finishes while no settle is in flight settles its own entry at once, itself;
    those that finish while one is in flight wait, and go together in the next. A quiet consumer
    pays nothing for this, and a busy one pays one round trip for many entries instead of one
    each. Until its entry is settled a handler's ``_handle_one`` has not returned, so a crash in
    between is the redelivery every handler is written for.
    """

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._queue: list[tuple[str, str, str, asyncio.Future[None]]] = []
        self._busy = False
        self._flusher: asyncio.Task[None] | None = None
        """Held only so the running flush is not collected: the loop keeps tasks weakly."""

    async def settle(self, handled_key: str, stream: str, entry_id: str) -> None:
        """Mark ``entry_id``'s message handled and ack the entry; raises if Redis failed."""
        if self._busy:
            done = asyncio.get_running_loop().create_future()
            self._queue.append((handled_key, stream, entry_id, done))
            await done
            return
        self._busy = True
        try:
            await self._run([(handled_key, stream, entry_id)])
        finally:
            # Whatever queued up meanwhile goes in one call; the last batch frees the settler.
            if self._queue:
                self._flusher = asyncio.create_task(self._flush())
            else:
                self._busy = False

    async def _run(self, entries: list[tuple[str, str, str]]) -> None:
        consumer = self.consumer
        await consumer.settle_script(
            keys=[key for handled_key, stream, _ in entries for key in (handled_key, stream)],
            args=[
                HANDLED,
                consumer.bus.settings.dedupe_ttl_s,
                consumer.group,
                *(entry_id for _, _, entry_id in entries),
            ],
        )

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:SETTLE_BATCH], self._queue[SETTLE_BATCH:]
                try:
                    await self._run([(key, stream, entry) for key, stream, entry, _ in batch])
                except asyncio.CancelledError:
                    for *_, done in batch + self._queue:
                        done.cancel()
                    raise
                except Exception as exc:
                    for *_, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._busy = False


@dataclass
class _InFlight:
    stream: str
    task: asyncio.Task[None]
    message_id: str | None = None
    """Set once the handler has claimed the message id."""


@dataclass
class Consumer:
    """Reads streams as one member of a consumer group and runs a handler per message."""

    bus: Bus
    streams: list[str]
    group: str
    handler: Handler
    name: str
    concurrency: int
    heartbeat_timeout_s: float
    max_deliveries: int
    drain_timeout_s: float = 30.0
    on_settled: SettledHook | None = None
    block_ms: int = 1000
    stats: ConsumerStats = field(default_factory=ConsumerStats)
    _inflight: dict[str, _InFlight] = field(default_factory=dict)
    _slot_freed: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: asyncio.Task[None] | None = None
    _settler: _Settler = field(init=False)

    def __post_init__(self) -> None:
        # Registered scripts run by SHA, falling back to sending the source once.
        self.touch_script = self.redis.register_script(_TOUCH_SCRIPT)
        self.settle_script = self.redis.register_script(_SETTLE_SCRIPT)
        self._settler = _Settler(self)

    @classmethod
    def of(
        cls,
        bus: Bus,
        streams: Iterable[str],
        group: str,
        handler: Handler,
        *,
        name: str | None = None,
        concurrency: int | None = None,
        heartbeat_timeout_s: float | None = None,
        max_deliveries: int | None = None,
        drain_timeout_s: float = 30.0,
        on_settled: SettledHook | None = None,
    ) -> Consumer:
        """A consumer of ``streams`` in ``group``, with the settings' defaults for what is not
        given; call ``run()`` (or ``start()``) to begin."""
        s = bus.settings
        return cls(
            bus,
            list(streams),
            group,
            handler,
            name=name or consumer_name(),
            concurrency=concurrency or s.consumer_concurrency,
            heartbeat_timeout_s=heartbeat_timeout_s or s.heartbeat_timeout_s,
            max_deliveries=max_deliveries or s.max_deliveries,
            drain_timeout_s=drain_timeout_s,
            on_settled=on_settled,
        )

    @property
    def redis(self) -> RedisClient:
        return self.bus.redis

    @property
    def heartbeat_interval_s(self) -> float:
        # Three beats per timeout: one late beat is not a death.
        return self.heartbeat_timeout_s / 3

    # Lifecycle

    def start(self) -> asyncio.Task[None]:
        """Run in the background; returns the task."""
        self._runner = asyncio.create_task(self.run(), name=f"consumer:{self.name}")
        return self._runner

    def stop(self) -> None:
        """Stop reading; in-flight messages are finished and acked before ``run`` returns."""
        self._stopping.set()

    async def close(self) -> None:
        """Stop and wait until shut down."""
        self.stop()
        if self._runner is not None:
            await self._runner

    async def run(self) -> None:
        """Consume until ``stop()``; then drain in-flight work and leave the group cleanly."""
        outage = Outage(f"consumer {self.name}")
        while not self._stopping.is_set():
            try:
                for stream in self.streams:
                    await self.bus.ensure_group(stream, self.group)
                await self._beat()
                outage.over()
                break
            except OUTAGE_ERRORS as exc:
                await outage.wait(exc)
        background = [
            asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat:{self.name}"),
            asyncio.create_task(self._reclaim_loop(), name=f"reclaim:{self.name}"),
        ]
        try:
            await self._read_loop()
        finally:
            await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(names.heartbeat_key(self.group, self.name))

    async def _read_loop(self) -> None:
        outage = Outage(f"consumer {self.name}")
        while not self._stopping.is_set():
            free = self.concurrency - len(self._inflight)
            if free <= 0:
                await self._wait_for_slot()
                continue
            try:
                response: Any = await self.redis.xreadgroup(
                    self.group,
                    self.name,
                    dict.fromkeys(self.streams, ">"),
                    count=free,
                    block=self.block_ms,
                )
            except (RedisError, OSError) as exc:
                if "NOGROUP" in str(exc):
                    # Redis came back without its data (no persistence, or a failover to a
                    # replica that never had the group): create the groups again, whole.
                    log.warning("consumer %s: its group is gone; creating it again", self.name)
                    with contextlib.suppress(RedisError, OSError):
                        for stream in self.streams:
                            await self.bus.ensure_group(stream, self.group)
                # Redis restarts and failovers happen; back off and read again.
                await outage.wait(exc)
                continue
            outage.over()
            for stream, entries in response or []:
                for entry_id, fields in entries:
                    self._spawn(text(stream), text(entry_id), fields, deliveries=1)
            if response:
                # Let the new handlers send their first command before the next blocking read
                # is written: a handoff's latency matters more than the next read's.
                await asyncio.sleep(0)

    async def _wait_for_slot(self) -> None:
        self._slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot_freed.wait(), timeout=self.block_ms / 1000)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _drain(self) -> None:
        tasks = [item.task for item in self._inflight.values()]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.drain_timeout_s)
        for task in pending:
            # Unacked: the entry stays pending and another consumer reclaims it.
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # Handling

    def _spawn(self, stream: str, entry_id: str, fields: Any, *, deliveries: int) -> None:
        task = asyncio.create_task(self._handle(stream, entry_id, fields, deliveries))
        self._inflight[entry_id] = _InFlight(stream, task)

    async def _handle(self, stream: str, entry_id: str, fields: Any, deliveries: int) -> None:
        try:
            await self._handle_one(stream, entry_id, fields, deliveries)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Bookkeeping against Redis failed; the entry stays pending and is reclaimed.
            log.exception("consumer %s: could not settle %s %s", self.name, stream, entry_id)
        finally:
            self._inflight.pop(entry_id, None)
            self._slot_freed.set()

    async def _handle_one(self, stream: str, entry_id: str, fields: Any, deliveries: int) -> None:
        raw = fields.get(PAYLOAD_FIELD.encode(), fields.get(PAYLOAD_FIELD))
        try:
            if raw is None:
                raise InvalidMessage(f"entry has no {PAYLOAD_FIELD!r} field")
            message = Envelope.decode(raw)
        except InvalidMessage as exc:
            await self._dead_letter(stream, entry_id, fields, str(exc), deliveries)
            return

        handled_key = names.handled_key(stream, self.group, message.id)
        # A first delivery cannot be a duplicate: publish() refuses an id it has seen, and an
        # entry id is read with ">" once. A redelivery may be: claim the message id in one
        # round trip that also tells a duplicate apart. The key is "busy" (with a lease the
        # heartbeat renews) while a handler runs, and "done" afterwards.
        if deliveries > 1:
            lease_ms = int(self.heartbeat_timeout_s * 1000)
            if not await self.redis.set(handled_key, _BUSY, nx=True, px=lease_ms):
                if await self.redis.get(handled_key) == HANDLED:
                    await self.redis.xack(stream, self.group, entry_id)
                    self.stats.duplicates += 1
                # Otherwise another consumer is handling the same id right now: leave this
                # entry pending; once reclaimed it is acked as a duplicate, or retried if that
                # consumer died.
                return
            self._inflight[entry_id].message_id = message.id

        delivery = Delivery(stream, entry_id, message, deliveries)
        try:
            await self.handler(delivery)
        except Reject as exc:
            await self._dead_letter(stream, entry_id, fields, f"rejected: {exc}", deliveries)
            return
        except Exception as exc:
            self.stats.failed += 1
            reason = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, Retry):
                log.exception("consumer %s: handler failed on %s", self.name, entry_id)
            await self.redis.delete(handled_key)
            await self._record(stream, entry_id, "failed", reason)
            if deliveries >= self.max_deliveries:
                await self._dead_letter(
                    stream,
                    entry_id,
                    fields,
                    f"delivered {deliveries} times without success; last error: {reason}",
                    deliveries,
                )
            # Otherwise leave it pending and untouched: it is reclaimed after the heartbeat
            # timeout, which doubles as the retry backoff.
            return

        await self._settler.settle(handled_key, stream, entry_id)
        if deliveries > 1:
            await self.redis.delete(names.history_key(stream, entry_id))
        self.stats.handled += 1
        if self.on_settled is not None:
            self.on_settled(delivery)

    async def _record(self, stream: str, entry_id: str, event: str, detail: str) -> None:
        item = {"at": utcnow().isoformat(), "consumer": self.name, "event": event, "detail": detail}
        key = names.history_key(stream, entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, json.dumps(item))
            pipe.expire(key, HISTORY_TTL_S)
            await pipe.execute()

    async def _dead_letter(
        self, stream: str, entry_id: str, fields: Any, reason: str, deliveries: int
    ) -> None:
        await self.bus.dead_letter(
            stream=stream,
            group=self.group,
            entry_id=entry_id,
            fields=fields,
            reason=reason,
            deliveries=deliveries,
        )
        self.stats.dead_lettered += 1

    # Liveness

    async def _beat(self) -> None:
        timeout_ms = int(self.heartbeat_timeout_s * 1000)
        await self.redis.set(names.heartbeat_key(self.group, self.name), b"1", px=timeout_ms)
        by_stream: dict[str, list[str]] = {}
        leases = []
        for entry_id, item in list(self._inflight.items()):
            by_stream.setdefault(item.stream, []).append(entry_id)
            if item.message_id:
                leases.append(names.handled_key(item.stream, self.group, item.message_id))
        if leases:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in leases:
                    pipe.pexpire(key, timeout_ms, xx=True)
                await pipe.execute()
        for stream, ids in by_stream.items():
            owned = await self.touch_script(keys=[stream], args=[self.group, self.name, *ids])
            lost = set(ids) - {text(i) for i in owned}
            if lost:
                self.stats.lost += len(lost)
                log.warning("consumer %s lost %s to a reclaimer", self.name, sorted(lost))

    async def _heartbeat_loop(self) -> None:
        outage = Outage(f"consumer {self.name} heartbeat", most_s=self.heartbeat_interval_s)
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            try:
                await self._beat()
                outage.over()
            except OUTAGE_ERRORS as exc:
                await outage.wait(exc)
            except RedisError as exc:
                log.warning("consumer %s: heartbeat failed: %s", self.name, exc)

    async def _reclaim_loop(self) -> None:
        outage = Outage(f"consumer {self.name} reclaim", most_s=self.heartbeat_interval_s)
        while not self._stopping.is_set():
            try:
                await self.reclaim()
                outage.over()
            except OUTAGE_ERRORS as exc:
                await outage.wait(exc)
                continue
            except RedisError as exc:
                if "NOGROUP" not in str(exc):  # the read loop creates a lost group again
                    log.warning("consumer %s: reclaim failed: %s", self.name, exc)
            await self._sleep(self.heartbeat_interval_s)

    async def reclaim(self) -> int:
        """Take over entries whose consumer stopped beating; returns how many were taken."""
        idle_ms = int(self.heartbeat_timeout_s * 1000)
        taken = 0
        for stream in self.streams:
            free = self.concurrency - len(self._inflight)
            if free <= 0 or self._stopping.is_set():
                break
            stale = await self.redis.xpending_range(
                stream, self.group, min="-", max="+", count=free, idle=idle_ms
            )
            if not stale:
                continue
            before = {text(p["message_id"]): p for p in stale}
            response = await self.redis.xautoclaim(
                stream, self.group, self.name, min_idle_time=idle_ms, count=free
            )
            # Redis 7 drops entries trimmed from the stream out of the PEL itself (third item);
            # Redis 6.2 returns them with no fields.
            for entry_id_raw, fields in response[1]:
                entry_id = text(entry_id_raw)
                previous = before.get(entry_id)
                delivered = int(previous["times_delivered"]) if previous else 1
                owner = text(previous["consumer"]) if previous else "unknown"
                await self._record(
                    stream,
                    entry_id,
                    "reclaimed",
                    f"delivery {delivered} to {owner} not acknowledged within "
                    f"{self.heartbeat_timeout_s:g}s; taken by {self.name}",
                )
                if fields is None:
                    await self._dead_letter(
                        stream, entry_id, {}, "entry was trimmed from the stream", delivered
                    )
                    continue
                if delivered >= self.max_deliveries:
                    await self._dead_letter(
                        stream,
                        entry_id,
                        fields,
                        f"delivered {delivered} times without being acknowledged",
                        delivered,
                    )
                    continue
                self.stats.reclaimed += 1
                await self.redis.hincrby(names.BUS_STATS_KEY, f"reclaimed|{stream}", 1)
                taken += 1
                self._spawn(stream, entry_id, fields, deliveries=delivered + 1)
        return taken


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes. For tools and tests."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return await predicate()
