"""A task's event stream as server-sent events: replay after ``Last-Event-ID``, then follow.

Every event of a task is an entry of its Redis stream (``names.task_events_stream``), and the
entry id is the SSE ``id:``. A client that reconnects with ``Last-Event-ID`` therefore gets
exactly the events it missed, then the live ones, and the stream closes after the task's
terminal state event. The HTTP route that serves it lives in :mod:`swarm.http.app`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from redis.exceptions import RedisError

from swarm import metrics, names
from swarm.connections import RedisClient, text
from swarm.errors import InvalidMessage
from swarm.messages import Envelope, TaskEvent
from swarm.tasks import EVENT_FIELD, TERMINAL_STATES, TaskNotFound, TaskStore

log = logging.getLogger(__name__)

_MAX_STREAM_PART = 2**64 - 1
PAGE = 500
"""Events read per XRANGE / XREAD."""


def is_stream_id(value: str) -> bool:
    """A Redis stream id Redis will accept (an out-of-range one would be a server error)."""
    left, sep, right = value.partition("-")
    parts = [left, right] if sep else [left]
    return all(
        p.isascii() and p.isdigit() and len(p) <= 20 and int(p) <= _MAX_STREAM_PART for p in parts
    )


def sse(event: TaskEvent, event_id: str | None = None) -> str:
    """One server-sent event: ``id:`` (if any), ``event:`` the kind, ``data:`` the event."""
    data = event.model_dump_json(exclude={"type"})
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event.kind}\ndata: {data}\n\n"


def _decode(task_id: str, entry_id: str, fields: dict[Any, Any]) -> TaskEvent | None:
    try:
        body = Envelope.decode(fields.get(EVENT_FIELD.encode(), b"")).body
    except InvalidMessage as exc:
        log.warning("task %s: skipping unreadable event %s: %s", task_id, entry_id, exc)
        return None
    return body if isinstance(body, TaskEvent) else None


def _events(task_id: str, entries: Any) -> Iterator[tuple[str, TaskEvent | None]]:
    """Each stream entry's id with its event, or None for one that cannot be read (skipped,
    but its id still moves the reader past it)."""
    for raw_id, fields in entries:
        entry_id = text(raw_id)
        yield entry_id, _decode(task_id, entry_id, fields)


def _ends(event: TaskEvent) -> bool:
    return event.kind == "state" and event.state in TERMINAL_STATES


async def event_stream(
    redis: RedisClient,
    store: TaskStore,
    task_id: str,
    after: str,
    *,
    keepalive_s: float,
    max_s: float,
    ended: bool,
) -> AsyncIterator[str]:
    """Replay the events after ``after``, then follow with XREAD until a terminal state event.

    Each XREAD blocks at most ``keepalive_s``; an empty one sends a keepalive comment (which
    also lets the server notice a client that went away) and re-reads the task's state, so a
    task ended by a writer that logged no event still closes the stream. The whole stream lasts
    at most ``max_s``. ``ended``: the task had ended when the request came in.
    """
    stream = names.task_events_stream(task_id)
    last = after
    ends_at = time.monotonic() + max_s
    metrics.SSE_STREAMS.inc()
    try:
        while True:  # the replay, a page at a time
            entries: Any = await redis.xrange(stream, min=f"({last}", max="+", count=PAGE)
            for last, event in _events(task_id, entries):
                if event is not None:
                    yield sse(event, last)
                    if _ends(event):
                        return
            if len(entries) < PAGE:
                break
        if ended:
            if final := await final_event(store, task_id, last):
                yield final
            return
        block_ms = max(1, int(keepalive_s * 1000))
        while (left := ends_at - time.monotonic()) > 0:
            response: Any = await redis.xread(
                {stream: last}, block=max(1, min(block_ms, int(left * 1000))), count=PAGE
            )
            if not response:
                if final := await final_event(store, task_id, last):
                    yield final
                    return
                yield ": keepalive\n\n"
                continue
            for _name, batch in response:
                for last, event in _events(task_id, batch):
                    if event is not None:
                        yield sse(event, last)
                        if _ends(event):
                            return
        yield ": time limit reached; reconnect with Last-Event-ID to go on\n\n"
    except (RedisError, OSError) as exc:
        # The 200 is already out, so a problem body is impossible: say why in a comment.
        log.warning("task %s: event stream ended: Redis: %s", task_id, exc)
        yield ": Redis is unavailable; reconnect with Last-Event-ID shortly\n\n"
    finally:
        metrics.SSE_STREAMS.dec()


async def final_event(store: TaskStore, task_id: str, last: str) -> str | None:
    """If the task has ended, what is left to send: the events logged after ``last`` up to the
    final one, or else a closing state event without an id (it is not in the log)."""
    try:
        task = await store.get(task_id)
    except TaskNotFound:  # expired while followed
        return sse(TaskEvent(kind="state", state="failed", reason="the task expired"))
    if not task.terminal:
        return None
    # A final state is logged in the same atomic write as the events that led to it, and they
    # may have landed between the last XREAD and the read above: send them, not a summary.
    out = []
    entries: Any = await store.redis.xrange(
        names.task_events_stream(task_id), min=f"({last}", max="+", count=PAGE
    )
    for event_id, event in _events(task_id, entries):  # unreadable ones skipped, as live
        if event is not None:
            out.append(sse(event, event_id))
            if _ends(event):
                return "".join(out)
    out.append(sse(TaskEvent(kind="state", state=task.state, reason=task.reason)))
    return "".join(out)
