"""Prometheus series of a swarm process, and the ASGI middleware that times HTTP requests.

Every series lives in :data:`REGISTRY` (not the client library's global one, so a test can read
exactly what swarm exports). To add one, define it here at module level with
``registry=REGISTRY`` and a name of the form ``swarm_<noun>_<unit>``; label values must come
from a small fixed set (never task ids or raw paths). ``GET /metrics`` serves :func:`exposition`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis.exceptions import ResponseError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm.connections import RedisClient

REGISTRY = CollectorRegistry()

TASKS_SUBMITTED = Counter(
    "swarm_tasks_submitted_total",
    "Task submissions by outcome: accepted, duplicate (an Idempotency-Key replay), "
    "rejected (bad input, 4xx) or failed (a dependency was down).",
    ["outcome"],
    registry=REGISTRY,
)
TASKS_CANCELED = Counter(
    "swarm_tasks_canceled_total", "Tasks canceled over the API.", registry=REGISTRY
)
HTTP_REQUESTS = Counter(
    "swarm_http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "swarm_http_request_duration_seconds",
    "Time from a request's arrival until its response headers are sent (for an event stream: "
    "until it starts streaming).",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
SSE_STREAMS = Gauge("swarm_sse_streams", "Task event streams open right now.", registry=REGISTRY)
STREAM_DEPTH = Gauge(
    "swarm_stream_length",
    "Entries in each swarm Redis stream, read when /metrics is scraped.",
    ["stream"],
    registry=REGISTRY,
)

# Fleet-wide totals, kept in Redis by every worker (swarm.accounting) and copied in at scrape.
SPECIALIST_STEPS = Gauge(
    "swarm_specialist_steps", "Steps finished, per specialist.", ["specialist"], registry=REGISTRY
)
SPECIALIST_ESCALATIONS = Gauge(
    "swarm_specialist_escalations",
    "Steps answered by the teacher instead of the specialist.",
    ["specialist"],
    registry=REGISTRY,
)
SPECIALIST_FAILED = Gauge(
    "swarm_specialist_failed_steps", "Steps that ended invalid.", ["specialist"], registry=REGISTRY
)
SPECIALIST_TOKENS = Gauge(
    "swarm_specialist_tokens",
    "Tokens the specialist's model read (prompt) and wrote (completion).",
    ["specialist", "kind"],
    registry=REGISTRY,
)
SPECIALIST_COST = Gauge(
    "swarm_specialist_cost_usd",
    "USD spent: local GPU time plus teacher calls.",
    ["specialist"],
    registry=REGISTRY,
)
SPECIALIST_ALL_TEACHER_COST = Gauge(
    "swarm_specialist_all_teacher_cost_usd",
    "USD the same steps would have cost sent to the teacher (estimate).",
    ["specialist"],
    registry=REGISTRY,
)


def export_totals(totals: dict[str, dict[str, float]]) -> None:
    """Copy the fleet-wide totals (``swarm.accounting.totals``) into the gauges."""
    for name, values in totals.items():
        SPECIALIST_STEPS.labels(name).set(values.get("steps", 0))
        SPECIALIST_ESCALATIONS.labels(name).set(values.get("escalations", 0))
        SPECIALIST_FAILED.labels(name).set(values.get("failed", 0))
        SPECIALIST_TOKENS.labels(name, "prompt").set(values.get("prompt_tokens", 0))
        SPECIALIST_TOKENS.labels(name, "completion").set(values.get("completion_tokens", 0))
        SPECIALIST_COST.labels(name).set(values.get("cost_usd", 0))
        SPECIALIST_ALL_TEACHER_COST.labels(name).set(values.get("all_teacher_cost_usd", 0))


class FleetCollector:
    """Series read from Redis at scrape time (:func:`refresh`): fleet-wide step latency
    histograms per specialist and adapter version, and pending messages per consumer group."""

    def __init__(self) -> None:
        self.histograms: dict[tuple[str, str], dict[str, float]] = {}
        self.pending: dict[tuple[str, str], int] = {}
        self.task_states: dict[str, float] = {}
        self.bus: dict[tuple[str, str], float] = {}

    def collect(self) -> Iterator[Metric]:
        latency = HistogramMetricFamily(
            "swarm_step_duration_seconds",
            "Step latency at the worker (model calls, retries, escalation), every worker.",
            labels=["specialist", "adapter_version"],
        )
        for (specialist, version), counts in sorted(self.histograms.items()):
            bounds = sorted((b for b in counts if b not in ("+Inf", "sum")), key=float)
            buckets = [(b, counts[b]) for b in bounds] + [("+Inf", counts.get("+Inf", 0.0))]
            latency.add_metric([specialist, version], buckets, counts.get("sum", 0.0))
        yield latency
        states = CounterMetricFamily(
            "swarm_tasks",
            "Tasks that entered each state, across the fleet (submitted, working, completed, "
            "failed, canceled, rejected).",
            labels=["state"],
        )
        for state, count in sorted(self.task_states.items()):
            states.add_metric([state], count)
        yield states
        for kind, help_text in (
            ("reclaimed", "Messages taken over from a consumer that stopped heartbeating."),
            ("dead_lettered", "Messages moved to the dead-letter stream."),
        ):
            family = CounterMetricFamily(
                f"swarm_messages_{kind}", help_text + " Fleet-wide.", labels=["stream"]
            )
            for (counted, stream), count in sorted(self.bus.items()):
                if counted == kind:
                    family.add_metric([stream], count)
            yield family
        pending = GaugeMetricFamily(
            "swarm_pending_messages",
            "Messages delivered to a consumer group and not yet acknowledged.",
            labels=["stream", "group"],
        )
        for (stream, group), count in sorted(self.pending.items()):
            pending.add_metric([stream, group], count)
        yield pending


FLEET = FleetCollector()
REGISTRY.register(FLEET)


async def refresh(redis: RedisClient) -> None:
    """Read what /metrics exports from Redis: totals, histograms, pending, stream lengths."""
    from swarm import accounting, names

    export_totals(await accounting.totals(redis))
    FLEET.histograms = await accounting.latency_histograms(redis)
    raw: dict[Any, Any] = await redis.hgetall(names.TASK_STATES_KEY)
    bus: dict[Any, Any] = await redis.hgetall(names.BUS_STATS_KEY)
    FLEET.bus = {}
    for key, value in bus.items():
        kind, _, stream = (key.decode() if isinstance(key, bytes) else str(key)).partition("|")
        FLEET.bus[(kind, stream)] = float(value)
    FLEET.task_states = {
        (k.decode() if isinstance(k, bytes) else str(k)): float(v) for k, v in raw.items()
    }
    streams = [names.TASKS_STREAM, names.RESULTS_STREAM]
    streams += [names.steps_stream(str(n)) for n in await _specialists(redis)]
    pending: dict[tuple[str, str], int] = {}
    for stream in streams:
        with contextlib.suppress(ResponseError):
            for group in await redis.xinfo_groups(stream):
                name = group["name"]
                name = name.decode() if isinstance(name, bytes) else str(name)
                pending[(stream, name)] = int(group["pending"])
    FLEET.pending = pending
    for stream in (names.TASKS_STREAM, names.RESULTS_STREAM, names.DEAD_LETTER_STREAM):
        STREAM_DEPTH.labels(stream).set(await redis.xlen(stream))


async def _specialists(redis: RedisClient) -> list[str]:
    from swarm import names

    keys = await redis.hkeys(names.SPECIALISTS_KEY)
    return [k.decode() if isinstance(k, bytes) else str(k) for k in keys]


def exposition() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, and its content type."""
    return _generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class HttpMetrics:
    """ASGI middleware counting and timing every HTTP request.

    The route label is the matched route's template (``/v1/tasks/{task_id}``), or ``unmatched``,
    so a scan of random paths cannot blow up the number of series.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                HTTP_LATENCY.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            HTTP_REQUESTS.labels(scope["method"], _route(scope), str(status)).inc()


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))
