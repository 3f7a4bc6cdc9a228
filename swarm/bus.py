"""The Redis Streams bus, publishing side: envelopes in, each exactly once per message id.

* **Deduplicated publish.** A message id is published to a stream at most once within the dedupe
  window (one Lua script: XADD unless the id was sent before), so a producer retrying after a
  lost reply has no second effect.
* **Bounded streams, without dropping accepted work.** Streams are trimmed approximately at
  publish, except the tasks stream, which :meth:`Bus.trim_read` trims only below what every
  consumer group has read and acknowledged.
* **Dead letters.** An entry that cannot be handled goes to the dead-letter stream with its
  delivery history, and its task is marked failed with the reason, in that order, so a crash in
  between repeats the move and changes nothing twice.

The consuming side (groups, heartbeats, reclaiming, the delivery cap) is
:mod:`swarm.consumer`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from swarm import names, scripts
from swarm.connections import RedisClient, text
from swarm.messages import TERMINAL_STATES, Envelope, TaskEvent, envelope, utcnow
from swarm.settings import Settings, get_settings

log = logging.getLogger(__name__)

PAYLOAD_FIELD = "m"
"""The stream entry field that holds the JSON envelope."""
DEAD_LETTER_MAXLEN = 100_000

# XADD unless this message id was published to this stream before; both keys share a slot.
# A maxlen of 0 means no trimming at publish (the tasks stream: see ``Bus.trim_read``).
_PUBLISH_SCRIPT = scripts.PUBLISH + "return publish(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])"

UNTRIMMED_AT_PUBLISH = frozenset({names.TASKS_STREAM})
"""Streams whose entries are accepted work nobody may drop before a consumer group has read
and acknowledged them: trimmed by :meth:`Bus.trim_read`, never by length at publish."""


# Fail the task of a dead-lettered message, unless there is no such task (expired, or never
# stored: nothing to create) or it has ended already (a late dead-letter must not log a second
# end). KEYS: task hash, its events stream, the fleet's task-state counters. ARGV: reason,
# updated_at, the event, events maxlen, then the terminal states. Returns 1 if it failed it.
_FAIL_TASK_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'doc') == 0 then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
for i = 5, #ARGV do
  if state == ARGV[i] then return 0 end
end
redis.call('HSET', KEYS[1], 'state', 'failed', 'reason', ARGV[1], 'updated_at', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'm', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'failed', 1)
return 1
"""


@dataclass(frozen=True)
class Outgoing:
    """A message ready to publish from inside another atomic write (see ``Bus.outgoing``)."""

    stream: str
    dedupe_key: str
    """``names.published_key`` of the stream and message id: set once the message is sent."""
    payload: bytes
    maxlen: int
    dedupe_ttl_s: int


class Bus:
    """Publishes envelopes to streams, trims them, and dead-letters what cannot be handled."""

    def __init__(self, redis: RedisClient, *, settings: Settings | None = None) -> None:
        self.redis = redis
        self.settings = settings or get_settings()
        # Registered scripts run by SHA, falling back to sending the source once.
        self._publish_script = redis.register_script(_PUBLISH_SCRIPT)
        self._fail_task_script = redis.register_script(_FAIL_TASK_SCRIPT)

    async def publish(self, stream: str, message: Envelope) -> str | None:
        """Append one envelope to a stream, trimmed approximately.

        Returns the entry id, or None if this message id was already published to the stream
        within the dedupe window (a producer retrying after a lost reply has no second effect).
        """
        entry_id = await self._publish_script(
            keys=[stream, names.published_key(stream, message.id)],
            args=[message.encode(), self.maxlen(stream), self.settings.dedupe_ttl_s],
        )
        return text(entry_id) if entry_id else None

    def maxlen(self, stream: str) -> int:
        """The approximate length ``stream`` is trimmed to at publish; 0: not trimmed there."""
        return 0 if stream in UNTRIMMED_AT_PUBLISH else self.settings.stream_maxlen

    async def trim_read(self, stream: str) -> int:
        """Trim ``stream`` to about ``SWARM_STREAM_MAXLEN`` entries, but only of entries every
        consumer group has read and acknowledged; returns how many were removed.

        The safe point is the oldest of each group's last delivered id and oldest pending
        entry: below it, every group is done with every entry."""
        if await self.redis.xlen(stream) <= self.settings.stream_maxlen:
            return 0
        groups: Any = await self.redis.xinfo_groups(stream)
        if not groups:
            return 0  # nobody has read anything yet: nothing may go
        safe: list[tuple[int, int]] = []
        for group in groups:
            info = {text(k): v for k, v in group.items()}
            safe.append(_stream_id(text(info["last-delivered-id"]), after=True))
            if int(info.get("pending", 0)):
                oldest: Any = await self.redis.xpending_range(
                    stream, text(info["name"]), min="-", max="+", count=1
                )
                if oldest:
                    safe.append(_stream_id(text(oldest[0]["message_id"])))
        low = min(safe)  # past 0-0 always: a real entry id is, and so is "just after" one
        return int(await self.redis.xtrim(stream, minid=f"{low[0]}-{low[1]}", approximate=False))

    def outgoing(self, stream: str, message: Envelope) -> Outgoing:
        """``message`` for ``stream``, to publish within a task write (``TaskStore.update``),
        with the same dedupe as :meth:`publish`."""
        return Outgoing(
            stream=stream,
            dedupe_key=names.published_key(stream, message.id),
            payload=message.encode(),
            maxlen=self.maxlen(stream),
            dedupe_ttl_s=self.settings.dedupe_ttl_s,
        )

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create a consumer group reading the whole stream, if it does not exist yet."""
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def dead_letter(
        self,
        *,
        stream: str,
        group: str,
        entry_id: str,
        fields: Mapping[Any, Any],
        reason: str,
        deliveries: int,
    ) -> None:
        """Move an entry to the dead-letter stream with its history, ack it, fail its task."""
        payload = fields.get(PAYLOAD_FIELD.encode(), fields.get(PAYLOAD_FIELD, b""))
        history_key = names.history_key(stream, entry_id)
        history = [json.loads(text(item)) for item in await self.redis.lrange(history_key, 0, -1)]
        task_id = _task_id_of(payload)
        record: dict[Any, Any] = {
            "reason": reason,
            "stream": stream,
            "group": group,
            "entry_id": entry_id,
            "deliveries": str(deliveries),
            "history": json.dumps(history),
            "payload": payload,
            "task_id": task_id or "",
            "at": utcnow().isoformat(),
        }
        if task_id:
            # First, so a crash before the ack below leaves the entry pending: it is dead-lettered
            # again, and this script, which leaves an ended task alone, does nothing the second
            # time. It moves ``rev`` too, so a writer that read the record before cannot
            # overwrite it.
            event = envelope(task_id, TaskEvent(kind="state", state="failed", reason=reason))
            await self._fail_task_script(
                keys=[
                    names.task_key(task_id),
                    names.task_events_stream(task_id),
                    names.TASK_STATES_KEY,
                ],
                args=[
                    reason,
                    record["at"],
                    event.encode(),
                    self.settings.stream_maxlen,
                    *sorted(TERMINAL_STATES),
                ],
            )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(names.DEAD_LETTER_STREAM, record, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            pipe.hincrby(names.BUS_STATS_KEY, f"dead_lettered|{stream}", 1)
            pipe.xack(stream, group, entry_id)
            pipe.delete(history_key)
            await pipe.execute()
        log.warning("dead-lettered %s %s: %s", stream, entry_id, reason)


def _task_id_of(payload: bytes | str) -> str | None:
    """Best effort: the task id of a payload that may not be a valid envelope."""
    try:
        task_id = json.loads(payload).get("task_id")
    except (ValueError, AttributeError, TypeError):
        return None
    return task_id if isinstance(task_id, str) and task_id else None


def _stream_id(entry_id: str, *, after: bool = False) -> tuple[int, int]:
    """A stream entry id as (milliseconds, sequence); with ``after``, the id just past it."""
    ms, _, seq = entry_id.partition("-")
    parsed = (int(ms), int(seq or 0))
    return (parsed[0], parsed[1] + 1) if after else parsed
