"""The API's bounds: body size, input size against the model's context, per-key task rate,
open event streams."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm import names
from swarm.connections import RedisClient
from swarm.http import problems
from swarm.http.problems import Problem

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuses bodies over ``limit`` bytes with 413, by Content-Length or by counting the stream.

    The body is buffered here (it is small by construction) and replayed to the app, so a
    chunked upload that grows too large is refused before any handler sees a byte of it.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: http.disconnect, for streaming responses

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem_response(
            413,
            f"the request body is larger than {self.limit} bytes; send a smaller input",
            kind="body-too-large",
            instance=scope.get("path"),
        )
        await response(scope, receive, send)


CHARS_PER_TOKEN = 4
"""Characters per token in English text for the tokenizers swarm serves: an input longer than
the context at this rate almost never fits (only text a tokenizer merges into long tokens)."""


def check_input_size(task_input: str | dict[str, Any], most: int, context_tokens: int) -> None:
    """A 413 for an input longer than SWARM_MAX_INPUT_CHARS, or than the model's context can
    hold even at :data:`CHARS_PER_TOKEN`: no worker could run it."""
    length = (
        len(task_input)
        if isinstance(task_input, str)
        else len(json.dumps(task_input, ensure_ascii=False))
    )
    if length > context_tokens * CHARS_PER_TOKEN:
        raise Problem(
            413,
            f"the input is {length} characters, about {length // CHARS_PER_TOKEN} tokens or "
            f"more: it cannot fit the model's context of {context_tokens} tokens "
            "(SWARM_MAX_MODEL_LEN); split it into several tasks",
            kind="input-too-long",
        )
    if length > most:
        raise Problem(
            413,
            f"the input is {length} characters; this server takes at most {most} "
            "(SWARM_MAX_INPUT_CHARS): split it into several tasks",
            kind="input-too-long",
        )


async def within_rate(redis: RedisClient, owner: str | None, per_minute: int) -> None:
    """A 429 once ``owner`` submitted ``per_minute`` tasks this minute; the count lives in
    Redis, so every API replica shares it."""
    if per_minute <= 0:
        return
    now = time.time()
    key = names.rate_key(owner or "anonymous", int(now // 60))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = await pipe.execute()
    if int(count) > per_minute:
        retry = max(1, 60 - int(now % 60))
        raise Problem(
            429,
            f"this key submitted {per_minute} tasks this minute (SWARM_API_TASKS_PER_MINUTE); "
            f"try again in {retry} s",
            kind="rate-limited",
            headers={"Retry-After": str(retry)},
        )


class StreamSlots:
    """Open event streams, by API key, within a process-wide and a per-key cap: each stream
    holds a Redis connection for up to an hour, so unbounded streams could starve the rest."""

    RETRY_AFTER_S = 5

    def __init__(self, *, most: int, most_per_key: int) -> None:
        self.most = most
        self.most_per_key = most_per_key
        self.by_key: dict[str, int] = {}

    def open(self, holder: str) -> None:
        """Take a slot for ``holder``, or raise a 429 saying which cap was reached."""
        if sum(self.by_key.values()) >= self.most:
            why = f"this server follows {self.most} event streams already (SWARM_API_MAX_STREAMS)"
        elif self.by_key.get(holder, 0) >= self.most_per_key:
            why = (f"this key holds {self.most_per_key} event streams open already "
                   "(SWARM_API_MAX_STREAMS_PER_KEY); close one")  # fmt: skip
        else:
            self.by_key[holder] = self.by_key.get(holder, 0) + 1
            return
        raise Problem(
            429, f"{why}; try again in {self.RETRY_AFTER_S} s", kind="too-many-streams",
            headers={"Retry-After": str(self.RETRY_AFTER_S)},
        )  # fmt: skip

    async def held(self, holder: str, events: AsyncIterator[str]) -> AsyncIterator[str]:
        """``events``, giving the slot back when the stream ends or the client goes."""
        try:
            async for event in events:
                yield event
        finally:
            self.by_key[holder] -= 1
            if not self.by_key[holder]:
                del self.by_key[holder]
