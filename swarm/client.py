"""``swarm.Client``: the swarm's HTTP API from Python, sync and async.

Built on :mod:`swarm.submitter`, the code ``swarm submit`` runs: a submission carries an
Idempotency-Key, so retrying it after a network error never makes a second task, and
:meth:`Client.events` reconnects with ``Last-Event-ID`` so no event is lost or repeated. Reads
are retried on network errors and 5xx answers. Refusals raise the error tree's
:class:`~swarm.errors.UserError` with the API's problem detail; an API that cannot be reached
raises :class:`~swarm.errors.InfrastructureError`; :meth:`Client.wait` past its timeout raises
:class:`~swarm.errors.DeadlineExceeded`.

    from swarm import Client

    swarm = Client("http://127.0.0.1:8000", api_key="...")
    task = swarm.submit("Call Ann at +1 555 0100", plan=["pii"])
    print(swarm.wait(task.id, timeout=60).result)

:class:`AsyncClient` has the same methods as coroutines (and ``events`` as an async iterator);
it runs the same client on worker threads, so both behave alike.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx

from swarm.catalog import SpecialistOut
from swarm.errors import DeadlineExceeded
from swarm.submitter import (
    READ_TIMEOUT_S,
    ServerEvent,
    auth_headers,
    call_api,
    follow_events,
    submit_task,
)
from swarm.tasks import TaskRecord

KEY_HINT = "pass api_key="
"""What a 401 tells a user of the client."""

Task = TaskRecord
"""A task as the API shows it: ``.id``, ``.state``, ``.steps``, ``.result``, ``.cost``..."""


class Client:
    """The swarm's HTTP API: submit, read, wait for, follow, cancel and list tasks."""

    def __init__(
        self, base_url: str, api_key: str | None = None, *, timeout_s: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s, read=READ_TIMEOUT_S))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(
        self,
        input: str | dict[str, Any],  # the API's own name for it
        plan: list[Any] | None = None,
        goal: str | None = None,
        *,
        deadline_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """Submit a task (a plan of specialists, or a goal for the planner); its record."""
        body: dict[str, Any] = {"input": input}
        if plan is not None:
            body["plan"] = plan
        if goal is not None:
            body["goal"] = goal
        if deadline_s is not None:
            body["deadline_s"] = deadline_s
        task_id = submit_task(
            self.base_url, body, api_key=self.api_key, idempotency_key=idempotency_key,
            client=self._http, hint=KEY_HINT,
        )  # fmt: skip
        return self.get(task_id)

    def get(self, task_id: str) -> Task:
        """The task's record now."""
        return Task.model_validate(self._call("GET", f"/v1/tasks/{task_id}", f"task {task_id}"))

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task's record once it has ended (completed, failed, canceled or rejected).

        Raises :class:`DeadlineExceeded` if it is still going after ``timeout`` seconds; the
        task itself goes on.
        """
        limit = None if timeout is None else time.monotonic() + timeout
        pause = 0.1
        while True:
            task = self.get(task_id)
            if task.terminal:
                return task
            if limit is not None and time.monotonic() + pause > limit:
                raise DeadlineExceeded(
                    f"task {task_id} is still {task.state} after {timeout:g} s; it goes on: "
                    f"wait again, or cancel it"
                )
            time.sleep(pause)
            pause = min(1.0, pause * 1.5)

    def events(self, task_id: str, after: str | None = None) -> Iterator[ServerEvent]:
        """The task's events, oldest first (those after event id ``after``, if given), live
        until its final state; a dropped stream is resumed where it stopped."""
        return follow_events(
            self.base_url, task_id, api_key=self.api_key, last_event_id=after, client=self._http
        )

    def cancel(self, task_id: str, reason: str | None = None) -> Task:
        """Cancel a task that has not ended (a 409 :class:`UserError` if it has)."""
        params = {"reason": reason} if reason else None
        data = self._call("POST", f"/v1/tasks/{task_id}/cancel", f"task {task_id}", params)
        return Task.model_validate(data)

    def list(
        self,
        *,
        state: str | None = None,
        specialist: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Task]:
        """Your tasks, newest first, up to ``limit``, filtered like ``GET /v1/tasks``."""
        params: dict[str, Any] = {"state": state, "specialist": specialist}
        params |= {"since": since and since.isoformat(), "until": until and until.isoformat()}
        params = {k: v for k, v in params.items() if v is not None}
        tasks: list[Task] = []
        while len(tasks) < limit:
            params["limit"] = min(100, limit - len(tasks))
            page = self._call("GET", "/v1/tasks", "the task list", params)
            tasks += [Task.model_validate(t) for t in page["tasks"]]
            if not page.get("next_cursor"):
                break
            params["cursor"] = page["next_cursor"]
        return tasks

    def specialists(self) -> builtins.list[SpecialistOut]:
        """Every registered specialist: version, status (a rejected one says why), eval."""
        return [SpecialistOut.model_validate(s) for s in self._call(
            "GET", "/v1/specialists", "the specialists"
        )]  # fmt: skip

    def _call(self, method: str, path: str, what: str, params: dict[str, Any] | None = None) -> Any:
        """One API call's JSON; network errors and 5xx are retried, a 4xx raises."""
        return call_api(
            self._http, method, f"{self.base_url}{path}", params=params,
            headers=auth_headers(self.api_key), refused=f"cannot read {what}", hint=KEY_HINT,
            unreachable=f"cannot reach the swarm API at {self.base_url}",
        )  # fmt: skip


class AsyncClient:
    """:class:`Client` for asyncio: the same methods, awaited. Each call runs the sync client
    on a worker thread, so retries, idempotency and event replay are the same code."""

    def __init__(
        self, base_url: str, api_key: str | None = None, *, timeout_s: float = 30.0
    ) -> None:
        self._sync = Client(base_url, api_key, timeout_s=timeout_s)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await asyncio.to_thread(self._sync.close)

    async def submit(
        self,
        input: str | dict[str, Any],
        plan: list[Any] | None = None,
        goal: str | None = None,
        **options: Any,
    ) -> Task:
        return await asyncio.to_thread(self._sync.submit, input, plan, goal, **options)

    async def get(self, task_id: str) -> Task:
        return await asyncio.to_thread(self._sync.get, task_id)

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:  # noqa: ASYNC109
        return await asyncio.to_thread(self._sync.wait, task_id, timeout)

    async def cancel(self, task_id: str, reason: str | None = None) -> Task:
        return await asyncio.to_thread(self._sync.cancel, task_id, reason)

    async def list(self, **filters: Any) -> list[Task]:
        return await asyncio.to_thread(lambda: self._sync.list(**filters))

    async def specialists(self) -> builtins.list[SpecialistOut]:
        return await asyncio.to_thread(self._sync.specialists)

    async def events(self, task_id: str, after: str | None = None) -> AsyncIterator[ServerEvent]:
        """The task's events as they come (see :meth:`Client.events`)."""
        stream = self._sync.events(task_id, after)
        done = object()
        try:
            while (event := await asyncio.to_thread(next, stream, done)) is not done:
                yield event  # type: ignore[misc]
        finally:
            await asyncio.to_thread(stream.close)  # type: ignore[attr-defined]
