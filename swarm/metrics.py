"""Prometheus series for the API process (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

TASKS_SUBMITTED = Counter(
    "swarm_tasks_submitted_total", "Tasks accepted by the API.", ["plan"], registry=REGISTRY
)
TASKS_REJECTED = Counter(
    "swarm_tasks_rejected_total", "Task submissions refused as bad input.", registry=REGISTRY
)
HTTP_REQUESTS = Counter(
    "swarm_http_requests_total", "HTTP requests.", ["method", "route", "status"], registry=REGISTRY
)
HTTP_LATENCY = Histogram(
    "swarm_http_request_seconds", "HTTP request latency.", ["method", "route"], registry=REGISTRY
)
STREAM_DEPTH = Gauge(
    "swarm_stream_length", "Entries in each swarm stream.", ["stream"], registry=REGISTRY
)
