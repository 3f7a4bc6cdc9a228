"""Traces across a Redis handoff (in-memory exporter) and JSON logs carrying the task id."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from swarm.logs import JsonFormatter, setup_logging, task_context
from swarm.settings import Settings
from swarm.tracing import current_traceparent, setup_tracing, span

from adapterfactory import register_builtins
from conftest import free_port
from openaistub import completion, openai_stub
from stepdriver import run_step

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def tracing() -> None:
    setup_tracing("none", "swarm-test", processor=SimpleSpanProcessor(EXPORTER))


@pytest.fixture
def spans(tracing: None) -> Iterator[InMemorySpanExporter]:
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


async def test_a_trace_spans_the_handoff_to_a_worker_and_its_model_call(
    redis: Redis, spans: InMemorySpanExporter
) -> None:
    await register_builtins(redis)
    sql_input = {"question": "How many orders?", "schema": "CREATE TABLE orders (id INT);"}
    with openai_stub(
        [lambda _b: (200, completion('{"sql": "SELECT COUNT(*) FROM orders"}'))], free_port()
    ) as stub:
        settings = Settings(heartbeat_timeout_s=2, vllm_urls=[stub.url])
        with span("POST /v1/tasks") as root:
            parent = current_traceparent()
        result = await run_step(redis, settings, "sql", sql_input, traceparent=parent)
    assert result.valid
    by_name = {s.name: s for s in spans.get_finished_spans()}
    step, chat = by_name["step sql"], by_name["model.chat"]
    trace_id = root.get_span_context().trace_id
    assert step.context.trace_id == chat.context.trace_id == trace_id
    assert step.parent is not None and step.parent.span_id == root.get_span_context().span_id
    assert chat.parent is not None and chat.parent.span_id == step.context.span_id
    assert step.attributes is not None and step.attributes["swarm.specialist"] == "sql"


def test_json_logs_carry_the_task_and_trace_ids(spans: InMemorySpanExporter) -> None:
    record = logging.LogRecord("swarm.worker", logging.INFO, __file__, 1, "step %s", ("s1",), None)
    with task_context("task-1", "s1"), span("work") as active:
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "step s1" and line["level"] == "INFO"
    assert line["task_id"] == "task-1" and line["step_id"] == "s1"
    assert line["trace_id"] == f"{active.get_span_context().trace_id:032x}"
    outside = json.loads(JsonFormatter().format(record))
    assert "task_id" not in outside


def test_http_client_request_lines_stay_out_of_info_logs() -> None:
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    try:
        setup_logging("INFO")
        assert logging.getLogger("swarm.anything").isEnabledFor(logging.INFO)
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
        setup_logging("DEBUG")
        assert logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], _ = before
        root.setLevel(before[1])
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)


NOT_EXPORTED = """
from swarm.tracing import current_traceparent, setup_tracing, span

setup_tracing("none", "swarm-test")
parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
with span("step pii", {"swarm.task_id": "t1"}, parent=parent) as active:
    print(active.is_recording(), current_traceparent())
"""


def test_with_no_exporter_spans_are_not_recorded_but_the_trace_goes_on() -> None:
    # Its own process: a tracer provider is installed once per process, and this one must
    # never have had a processor added.
    done = subprocess.run(
        [sys.executable, "-c", NOT_EXPORTED], capture_output=True, text=True, check=True
    )
    recording, traceparent = done.stdout.split()
    version, trace_id, span_id, _flags = traceparent.split("-")
    assert recording == "False"
    assert (version, trace_id) == ("00", "0af7651916cd43dd8448eb211c80319c")
    assert span_id != "b7ad6b7169203331"  # a span of its own, child of the envelope's
