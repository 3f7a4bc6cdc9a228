"""The client side of ``swarm submit``: submit a task, then follow its events live.

If the event stream drops, it reconnects with ``Last-Event-ID`` and carries on where it left
off, so no progress line is lost or repeated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from swarm.errors import InfrastructureError, UserError

MAX_RECONNECTS = 5


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def submit_task(
    url: str,
    body: dict[str, Any],
    *,
    api_key: str | None = None,
    idempotency_key: str | None = None,
) -> str:
    """POST the task; returns its id or raises UserError with the API's problem detail."""
    headers = _headers(api_key)
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    try:
        response = httpx.post(f"{url}/v1/tasks", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise InfrastructureError(f"cannot reach the swarm API at {url}: {exc}") from exc
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise UserError(f"the API refused the task ({response.status_code}): {detail}")
    return str(response.json()["id"])


def follow(
    url: str, task_id: str, *, api_key: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (event, data) for each task event until the task ends, reconnecting as needed."""
    last: str | None = None
    for attempt in range(MAX_RECONNECTS + 1):
        headers = _headers(api_key)
        if last:
            headers["Last-Event-ID"] = last
        try:
            with httpx.stream(
                "GET", f"{url}/v1/tasks/{task_id}/events", headers=headers, timeout=None
            ) as response:
                response.raise_for_status()
                event: dict[str, str] = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        continue
                    if line:
                        field, _, value = line.partition(": ")
                        event[field] = value
                        continue
                    if not event:
                        continue
                    last = event.get("id", last)
                    data = json.loads(event.get("data", "{}"))
                    yield event.get("event", "message"), data
                    if event.get("event") == "state" and data.get("state") in _TERMINAL:
                        return
                    event = {}
            return
        except (httpx.TransportError, httpx.RemoteProtocolError):
            time.sleep(min(2.0, 0.2 * 2**attempt))
    raise InfrastructureError(f"lost the event stream of task {task_id} {MAX_RECONNECTS} times")


_TERMINAL = {"completed", "failed", "canceled", "rejected"}


def describe(event: str, data: dict[str, Any]) -> str:
    """One progress line for a task event."""
    step = data.get("step_id")
    detail = data.get("detail") or {}
    if event == "state":
        line = f"task {data.get('state')}"
        if data.get("reason"):
            line += f": {data['reason']}"
        if data.get("state") == "working" and detail.get("plan"):
            chain = " -> ".join(s["specialist"] for s in detail["plan"])
            line += f" (plan: {chain}, {detail.get('plan_source')})"
        if data.get("state") == "completed":
            line += f"\nresult: {json.dumps(detail.get('result'), ensure_ascii=False)}"
        return line
    if event == "step.started":
        return f"step {step} ({detail.get('specialist')}) started"
    if event == "step.completed":
        output = json.dumps(detail.get("output"), ensure_ascii=False)
        took = f"{detail.get('latency_ms', 0):.0f} ms"
        return f"step {step} ({detail.get('specialist')}) done in {took}: {output}"
    if event == "step.failed":
        return f"step {step} ({detail.get('specialist')}) failed: {data.get('reason')}"
    return f"{event}: {json.dumps(data)}"


def submit_and_follow(
    url: str,
    body: dict[str, Any],
    *,
    api_key: str | None = None,
    echo: Callable[[str], None] = print,
) -> str:
    """Submit, print live progress, and return the final state."""
    task_id = submit_task(url, body, api_key=api_key)
    echo(f"task {task_id} submitted")
    final = "unknown"
    for event, data in follow(url, task_id, api_key=api_key):
        echo(describe(event, data))
        if event == "state":
            final = str(data.get("state"))
    return final
