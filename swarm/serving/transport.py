"""The model client's HTTP: one aiohttp session per event loop, answers read whole.

:class:`Http` sends one request and sorts what went wrong into three kinds the client retries
differently (:class:`CannotConnect`, :class:`TimedOut`, :class:`Broken`); what an answer means
is the client's business (:mod:`swarm.serving.modelclient`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

MAX_CONNECTIONS = 100
"""Connections one client keeps to all model servers together (calls beyond wait for one)."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole."""

    status_code: int
    content_type: str
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class CannotConnect(Exception):
    """No connection could be made (refused, unresolvable, connect timeout, pool exhausted)."""


class TimedOut(Exception):
    """Connected, but the answer did not come within the timeout."""


class Broken(Exception):
    """The connection failed mid-request (reset, closed by a restarting server)."""


class Http:
    """The model client's HTTP: aiohttp, one session per event loop, answers read whole.

    Not httpx, which the rest of swarm uses: every step makes one model call, and under
    concurrency httpx spent about 3 ms of CPU per call on its connection pool's bookkeeping,
    ten times what aiohttp spends (``bench/overhead.py``; docs/benchmarks.md). A session
    belongs to the event loop that made it, so a client used from a new loop gets a new one.
    """

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
            )
            self._loop = loop
        return self._session

    async def send(self, method: str, url: str, body: Any = None, *, timeout_s: float) -> Answer:
        """One request; raises ``CannotConnect``, ``TimedOut`` or ``Broken``."""
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._current().request(method, url, json=body, timeout=timeout) as response:
                content = await response.read()
                return Answer(response.status, response.headers.get("content-type", ""), content)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise CannotConnect(f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise TimedOut(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise Broken(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        with contextlib.suppress(RuntimeError):
            if self._loop is asyncio.get_running_loop():
                await session.close()


def answer_detail(response: Answer) -> str:
    """The error message an answer carries (OpenAI's or FastAPI's shape), cut to 300 chars."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message", data))[:300]
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])[:300]
    return str(data)[:300]
