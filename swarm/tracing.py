"""OpenTelemetry traces: one trace from the HTTP request through every Redis handoff and model call.

The W3C ``traceparent`` of the sender's span rides in each envelope, so a consumer's span is a
child of the publisher's even across processes and machines. ``SWARM_TRACE_EXPORTER`` picks
where spans go: ``none`` (the default: spans are not recorded, but each still gets its own id
and the trace is still propagated, so a process that does export fits into the same trace),
``console`` (one JSON object per span on stderr, for local use) or ``otlp`` (the standard
``OTEL_EXPORTER_OTLP_*`` variables say where).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from swarm.errors import ConfigurationError

TRACER_NAME = "swarm"


class _RecordWhenExported(Sampler):
    """Records spans once something takes them (an exporter, or a test's processor), and until
    then drops them. A dropped span still has its own id and carries the trace on, at a small
    part of a recorded span's cost: recording every span nobody exports took a tenth of the
    worker's and the orchestrator's CPU. The parent's sampled flag is ignored, so a process that
    exports records its spans even below one from a process that does not."""

    recording = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        decide = ALWAYS_ON if self.recording else ALWAYS_OFF
        return decide.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return "RecordWhenExported"


_sampler = _RecordWhenExported()
_ids = RandomIdGenerator()
_W3C = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def setup_tracing(exporter: str, service: str, *, processor: SpanProcessor | None = None) -> None:
    """Install the process's tracer provider once; ``processor`` (tests) is added every call,
    and takes the place of ``exporter`` on the first."""
    global _provider
    if _provider is None:
        if processor is None:
            processor = _exporter_processor(exporter)
        _provider = TracerProvider(
            resource=Resource.create({"service.name": service}), sampler=_sampler
        )
        trace.set_tracer_provider(_provider)
    if processor is not None:
        _provider.add_span_processor(processor)
        _sampler.recording = True


def _exporter_processor(exporter: str) -> SpanProcessor | None:
    """What sends spans where ``SWARM_TRACE_EXPORTER`` says; None for ``none``."""
    if exporter == "none":
        return None
    if exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigurationError(
                "SWARM_TRACE_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http installed"
            ) from exc
        return BatchSpanProcessor(OTLPSpanExporter())
    raise ConfigurationError(f"SWARM_TRACE_EXPORTER={exporter!r}: use none, console or otlp")


@functools.cache
def tracer() -> trace.Tracer:
    """The process's tracer. Cached: the SDK builds a new one per ``get_tracer`` call, a cost
    paid on every span of the hot path. One taken before ``setup_tracing`` is a proxy that
    follows the provider installed later."""
    return trace.get_tracer(TRACER_NAME)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, to put in an outgoing envelope."""
    carrier: dict[str, str] = {}
    # Unrecorded, the W3C propagator alone: the global one also walks baggage, per handoff.
    (propagate if _sampler.recording else _W3C).inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, parent: str | None = None
) -> Iterator[trace.Span]:
    """A span, child of the envelope's ``parent`` traceparent when given, else of the current."""
    if not _sampler.recording:
        # Nothing takes spans, so none is built: the SDK would drop it anyway, at several times
        # the cost of this id and context switch. The trace goes on just the same.
        context = _W3C.extract({"traceparent": parent}) if parent else None
        own = _child_of(trace.get_current_span(context).get_span_context())
        with trace.use_span(trace.NonRecordingSpan(own), end_on_exit=False) as active:
            yield active
        return
    context = propagate.extract({"traceparent": parent}) if parent else None
    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    with tracer().start_as_current_span(name, context=context, attributes=clean) as active:
        yield active


def _child_of(parent: SpanContext) -> SpanContext:
    """A new span's context: its own span id, in the parent's trace or a new one."""
    span_id = _ids.generate_span_id()
    if parent.is_valid:
        return SpanContext(parent.trace_id, span_id, False, TraceFlags(TraceFlags.DEFAULT))
    return SpanContext(_ids.generate_trace_id(), span_id, False, TraceFlags(TraceFlags.DEFAULT))
