"""OpenTelemetry traces: one trace from the HTTP request through every Redis handoff and model call.

The W3C ``traceparent`` of the sender's span rides in each envelope, so a consumer's span is a
child of the publisher's even across processes and machines. ``SWARM_TRACE_EXPORTER`` picks
where spans go: ``none`` (the default: spans are still created and propagated, just not
exported), ``console`` (one JSON object per span on stderr, for local use) or ``otlp`` (the
standard ``OTEL_EXPORTER_OTLP_*`` variables say where).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from swarm.errors import ConfigurationError

TRACER_NAME = "swarm"
_provider: TracerProvider | None = None


def setup_tracing(exporter: str, service: str, *, processor: SpanProcessor | None = None) -> None:
    """Install the process's tracer provider once; ``processor`` (tests) is added every call."""
    global _provider
    if _provider is not None:
        if processor is not None:
            _provider.add_span_processor(processor)
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if processor is not None:
        provider.add_span_processor(processor)
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigurationError(
                "SWARM_TRACE_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http installed"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter != "none":
        raise ConfigurationError(f"SWARM_TRACE_EXPORTER={exporter!r}: use none, console or otlp")
    trace.set_tracer_provider(provider)
    _provider = provider


@functools.cache
def tracer() -> trace.Tracer:
    """The process's tracer. Cached: the SDK builds a new one per ``get_tracer`` call, a cost
    paid on every span of the hot path. One taken before ``setup_tracing`` is a proxy that
    follows the provider installed later."""
    return trace.get_tracer(TRACER_NAME)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, to put in an outgoing envelope."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, parent: str | None = None
) -> Iterator[trace.Span]:
    """A span, child of the envelope's ``parent`` traceparent when given, else of the current."""
    context = propagate.extract({"traceparent": parent}) if parent else None
    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    with tracer().start_as_current_span(name, context=context, attributes=clean) as active:
        yield active
