"""The client side of ``swarm submit``: submit a task, then follow its events live.

The POST carries an Idempotency-Key (one is made up if the caller has none), so retrying it
after a network error can never create a second task. The event stream is followed until the
task's final state; if it drops, or the server ends it at its time limit, the client reconnects
with ``Last-Event-ID`` and the server replays exactly what was missed, so no progress line is
lost or printed twice. Reconnecting is bounded: so many failures in a row without an event, and
it gives up with an :class:`~swarm.errors.InfrastructureError`; a stream the server ended
while the task can still be read is no failure (a step may be quiet for minutes).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from swarm.errors import InfrastructureError, UserError
from swarm.tasks import TERMINAL_STATES

MAX_FAILURES = 8
"""Reconnects in a row that bring no event before :func:`follow_events` gives up."""
POST_RETRIES = 3
READ_TIMEOUT_S = 30.0
"""Silence after which a stream counts as dead (the server sends a keep-alive every 5 s)."""
MAX_SHOWN_CHARS = 300
"""Outputs longer than this are cut in progress lines (the task record has them whole)."""


@dataclass(frozen=True)
class ServerEvent:
    """One server-sent event."""

    id: str | None
    """The event's own ``id:`` (None if it had none)."""
    event: str
    data: Any
    """The ``data:`` parsed as JSON (the raw text if it is not JSON)."""

    @property
    def final(self) -> bool:
        """Whether this is the task's final state event."""
        return (
            self.event == "state"
            and isinstance(self.data, dict)
            and self.data.get("state") in TERMINAL_STATES
        )


class EventParser:
    """An incremental ``text/event-stream`` parser, fed one line at a time (WHATWG rules)."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, line: str) -> ServerEvent | None:
        """Take one line (without its newline); returns an event when a blank line ends one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> ServerEvent | None:
        data, kind, event_id = "\n".join(self._data), self._event or "message", self._id
        self._data, self._event, self._id = [], "", None
        if not data and event_id is None:
            return None
        try:
            parsed: Any = json.loads(data)
        except ValueError:
            parsed = data
        return ServerEvent(id=event_id, event=kind, data=parsed)


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


CLI_KEY_HINT = "pass --api-key, or set SWARM_API_KEY"
"""What a 401 tells a user of the command line."""


def refusal(response: httpx.Response, what: str, *, hint: str = CLI_KEY_HINT) -> UserError:
    """A 4xx answer as a UserError carrying the problem's detail; a 401 says what to pass."""
    try:
        problem = response.json()
        detail = str(problem.get("detail") or response.text)
    except ValueError:
        problem, detail = {}, response.text or response.reason_phrase
    if response.status_code == 401:
        detail += f" ({hint})"
    return UserError(f"{what} ({response.status_code}): {detail}")


def call_api(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    refused: str,
    unreachable: str,
    hint: str = CLI_KEY_HINT,
    **request: Any,
) -> Any:
    """One API call's JSON. Network errors and 5xx answers are retried with backoff; a 4xx
    raises :class:`UserError` (``refused``, with the API's problem detail); no answer after
    the retries raises :class:`InfrastructureError` (``unreachable``)."""
    failure = ""
    for attempt in range(POST_RETRIES + 1):
        if attempt:
            time.sleep(min(4.0, 0.5 * 2 ** (attempt - 1)))
        try:
            response = http.request(method, url, **request)
        except httpx.TransportError as exc:
            failure = f"{type(exc).__name__}: {exc}"
            continue
        if response.status_code >= 500:
            failure = f"{response.status_code}: {response.text[:200]}"
            continue
        if response.status_code >= 400:
            raise refusal(response, refused, hint=hint)
        return response.json()
    raise InfrastructureError(f"{unreachable}: {failure}")


def submit_task(
    url: str,
    body: dict[str, Any],
    *,
    api_key: str | None = None,
    idempotency_key: str | None = None,
    client: httpx.Client | None = None,
    hint: str = CLI_KEY_HINT,
) -> str:
    """POST the task and return its id.

    Retries network errors and 5xx answers (safely: every try carries the same
    Idempotency-Key). A 4xx raises :class:`UserError` with the API's problem detail; no answer
    after the retries raises :class:`InfrastructureError`.
    """
    headers = {**auth_headers(api_key), "Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    http = client or httpx.Client(timeout=30.0)
    try:
        accepted = call_api(
            http, "POST", f"{url}/v1/tasks", json=body, headers=headers, hint=hint,
            refused="the API refused the task",
            unreachable=f"cannot submit to the swarm API at {url}",
        )  # fmt: skip
    finally:
        if client is None:
            http.close()
    return str(accepted["id"])


def follow_events(
    url: str,
    task_id: str,
    *,
    api_key: str | None = None,
    last_event_id: str | None = None,
    on_reconnect: Callable[[str | None, str], None] | None = None,
    client: httpx.Client | None = None,
    max_failures: int = MAX_FAILURES,
) -> Iterator[ServerEvent]:
    """Yield the task's events, oldest first, until its final state event.

    On a dropped connection, a 5xx or a stream the server ended early, it reconnects with
    ``Last-Event-ID`` (after calling ``on_reconnect(last_id, why)``); events it has already
    yielded are never yielded again. It gives up after ``max_failures`` reconnects in a row
    that bring no event, not counting streams the server ended while the task could still
    be read (GET /v1/tasks/{id}), so a long quiet step is followed to its end.
    """
    http = client or httpx.Client(timeout=httpx.Timeout(10.0, read=READ_TIMEOUT_S))
    last = last_event_id
    failures = 0
    try:
        while True:
            progressed = ended_cleanly = False
            headers = auth_headers(api_key) | ({"Last-Event-ID": last} if last else {})
            try:
                with http.stream(
                    "GET", f"{url}/v1/tasks/{task_id}/events", headers=headers
                ) as response:
                    if 400 <= response.status_code < 500:
                        response.read()
                        raise refusal(response, f"cannot follow task {task_id}")
                    if response.status_code >= 500:
                        why = f"the API answered {response.status_code}"
                    else:
                        parser = EventParser()
                        said = ""
                        for line in response.iter_lines():
                            if line.startswith(":") and line[1:].strip() != "keepalive":
                                said = line[1:].strip()  # why the server ends the stream
                            event = parser.feed(line)
                            if event is None or _seen(event, last):
                                continue
                            progressed, failures = True, 0
                            last = event.id or last
                            yield event
                            if event.final:
                                return
                        why = "the server ended the stream" + (f" ({said})" if said else "")
                        ended_cleanly = True
            except httpx.TransportError as exc:
                why = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if not progressed:
                # A stream the server ended on its own (its time limit, or a long quiet step)
                # is no outage as long as the task can still be read: a step may run longer
                # than all the reconnects in a row that count as losing the stream.
                if ended_cleanly and _task_readable(http, url, task_id, api_key):
                    failures = 0
                else:
                    failures += 1
                if failures > max_failures:
                    raise InfrastructureError(
                        f"lost the event stream of task {task_id} {failures} times in a row "
                        f"({why}); see GET {url}/v1/tasks/{task_id}"
                    )
            if on_reconnect is not None:
                on_reconnect(last, why)
            if progressed:
                delay = 0.0
            elif failures:
                delay = min(5.0, 0.25 * 2 ** (failures - 1))
            else:
                delay = 1.0  # the stream of a task still running ended: go on soon
            time.sleep(delay)
    finally:
        if client is None:
            http.close()


def _task_readable(http: httpx.Client, url: str, task_id: str, api_key: str | None) -> bool:
    """Whether GET /v1/tasks/{id} answers (so the API and its Redis work); a 4xx raises."""
    try:
        response = http.get(f"{url}/v1/tasks/{task_id}", headers=auth_headers(api_key))
    except httpx.TransportError:
        return False
    if 400 <= response.status_code < 500:
        raise refusal(response, f"cannot follow task {task_id}")
    return response.status_code == 200


def _seen(event: ServerEvent, last: str | None) -> bool:
    """Whether an event is at or before the last one yielded (stream ids grow)."""
    if event.id is None or last is None:
        return False
    try:
        return _order(event.id) <= _order(last)
    except ValueError:
        return False


def _order(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def describe(event: ServerEvent) -> str:
    """One progress line for a task event."""
    data = event.data if isinstance(event.data, dict) else {"detail": {"data": event.data}}
    detail = data.get("detail") or {}
    step = f"step {data.get('step_id')} ({detail.get('specialist', '?')})"
    if event.event == "state":
        state = data.get("state")
        line = f"task {state}"
        if data.get("reason"):
            line += f": {data['reason']}"
        if detail.get("plan"):
            chain = " -> ".join(str(s.get("specialist")) for s in detail["plan"])
            line += f" (plan: {chain}; from {detail.get('plan_source') or 'the request'})"
        if state == "completed" and "result" in detail:
            line += f"\nresult: {_show(detail['result'])}"
        return line
    if event.event == "step.started":
        return f"{step} started"
    if event.event == "step.completed":
        took = detail.get("latency_ms")
        took_text = f" in {took:.0f} ms" if isinstance(took, int | float) else ""
        return f"{step} done{took_text}: {_show(detail.get('output'))}"
    if event.event == "step.failed":
        return f"{step} failed: {data.get('reason')}"
    return f"{event.event}: {_show(data)}"


def submit_and_follow(
    url: str,
    body: dict[str, Any],
    *,
    api_key: str | None = None,
    idempotency_key: str | None = None,
    echo: Callable[[str], None] = print,
) -> str:
    """``swarm submit``: submit the task, print a line per event until it ends, and return
    its final state ('completed', 'failed', 'canceled' or 'rejected')."""
    url = url.rstrip("/")
    task_id = submit_task(url, body, api_key=api_key, idempotency_key=idempotency_key)
    echo(f"task {task_id} submitted")
    final = "unknown"
    told = ""

    def reconnecting(last: str | None, why: str) -> None:
        nonlocal told
        line = f"(event stream interrupted: {why}; resuming after event {last or 'none'})"
        if line != told:  # the same interruption again, with no event between: said already
            echo(line)
            told = line

    try:
        for event in follow_events(url, task_id, api_key=api_key, on_reconnect=reconnecting):
            told = ""
            echo(describe(event))
            if event.final:
                final = str(event.data["state"])
    except KeyboardInterrupt:
        echo(f"(stopped following; the task goes on: GET {url}/v1/tasks/{task_id})")
        raise
    return final
