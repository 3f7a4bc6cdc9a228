"""Scale-out: two orchestrators and two workers on one Redis, behind the real HTTP API.

The model is a stub over real HTTP that answers each specialist's schema at once, so the test
is about the runtime: every task completes, every step runs once, nothing completes twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from orchestrator.planner import RulePlanner
from orchestrator.runner import Orchestrator
from specialists.worker import Worker
from swarm import names
from swarm.bus import PAYLOAD_FIELD
from swarm.messages import Envelope, StepResult, TaskEvent
from swarm.serving.modelclient import ModelClient, requested_schema
from swarm.settings import Settings
from swarm.tracing import setup_tracing

from adapterfactory import register_builtins
from apiserver import api_server
from conftest import free_port
from openaistub import completion, openai_stub

pytestmark = pytest.mark.redis_backends

TASKS = 40
SPANS = InMemorySpanExporter()
TEXT = "Email John Smith at john@example.com about the Acme order."


def answer(body: dict[str, Any]) -> tuple[int, Any]:
    """A valid output for whichever specialist's schema the request carries."""
    fields = requested_schema(body)["properties"]
    if "redacted_text" in fields:
        output: dict[str, Any] = {
            "redacted_text": "Email [PERSON] at [EMAIL] about the Acme order.",
            "spans": [{"text": "John Smith", "type": "PERSON"},
                      {"text": "john@example.com", "type": "EMAIL"}],
        }  # fmt: skip
    else:
        output = {"entities": [{"text": "Acme", "type": "ORGANIZATION"}]}
    return 200, completion(json.dumps(output))


@pytest.fixture
async def fleet(redis: Redis, redis_url: str) -> AsyncIterator[Settings]:
    await register_builtins(redis)
    with openai_stub(answer, free_port()) as model:
        settings = Settings(redis_url=redis_url, vllm_urls=[model.url],
                            heartbeat_timeout_s=2.0)  # fmt: skip
        client = ModelClient(settings)
        orchestrators = [
            Orchestrator(redis, settings, RulePlanner(), sweep_interval_s=0.2) for _ in range(2)
        ]
        for orchestrator in orchestrators:
            orchestrator.start()
        workers = [Worker(redis, settings, client, base_model="base") for _ in range(2)]
        running = [asyncio.create_task(w.run()) for w in workers]
        try:
            yield settings
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*running)
            for orchestrator in orchestrators:
                await orchestrator.close()
            await client.aclose()


async def test_two_orchestrators_and_two_workers_lose_nothing_and_finish_once(
    fleet: Settings, redis: Redis
) -> None:
    with api_server(fleet, free_port()) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            submitted = await asyncio.gather(*(
                client.post("/v1/tasks", json={"input": {"text": f"{TEXT} #{i}"},
                                               "plan": ["pii", "entities"]})
                for i in range(TASKS)
            ))  # fmt: skip
            ids = [r.json()["id"] for r in submitted]
            assert all(r.status_code == 202 for r in submitted)
            tasks = []
            for task_id in ids:
                for _ in range(400):
                    task = (await client.get(f"/v1/tasks/{task_id}")).json()
                    if task["state"] not in ("submitted", "working"):
                        break
                    await asyncio.sleep(0.05)
                tasks.append(task)
    assert [t["state"] for t in tasks] == ["completed"] * TASKS
    assert all(t["result"] == {"entities": [{"text": "Acme", "type": "ORGANIZATION"}]}
               for t in tasks)  # fmt: skip
    # Exactly one result per step on the bus, and one completion per task in its event log.
    results: dict[tuple[str, str], int] = {}
    for _id, fields in await redis.xrange(names.RESULTS_STREAM):
        message = Envelope.decode(fields[PAYLOAD_FIELD.encode()])
        assert isinstance(message.body, StepResult)
        key = (message.task_id, message.body.step_id)
        results[key] = results.get(key, 0) + 1
    assert len(results) == 2 * TASKS and set(results.values()) == {1}
    for task_id in ids:
        events = [
            Envelope.decode(f[PAYLOAD_FIELD.encode()]).body
            for _id, f in await redis.xrange(names.task_events_stream(task_id))
        ]
        states = [e.state for e in events if isinstance(e, TaskEvent) and e.kind == "state"]
        assert states.count("completed") == 1


async def test_one_trace_runs_from_the_http_request_through_every_handoff(
    fleet: Settings,
) -> None:
    setup_tracing("none", "swarm-test", processor=SimpleSpanProcessor(SPANS))
    SPANS.clear()
    with api_server(fleet, free_port()) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            task_id = (
                await client.post(
                    "/v1/tasks", json={"input": {"text": TEXT}, "plan": ["pii", "entities"]}
                )
            ).json()["id"]
            for _ in range(400):
                if (await client.get(f"/v1/tasks/{task_id}")).json()["state"] == "completed":
                    break
                await asyncio.sleep(0.05)
    spans = [s for s in SPANS.get_finished_spans()
             if (s.attributes or {}).get("swarm.task_id", task_id) == task_id]  # fmt: skip
    names_ = [s.name for s in spans]
    for expected in ("task.submit", "orchestrator task.submitted", "step pii", "step entities",
                     "orchestrator step.result", "model.chat"):  # fmt: skip
        assert expected in names_, names_
    root = next(s for s in spans if s.name == "task.submit")
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    by_id = {s.context.span_id: s for s in spans}
    step = next(s for s in spans if s.name == "step entities")
    chain = []
    while step.parent is not None:
        chain.append(step.name)
        step = by_id[step.parent.span_id]
    # entities' step <- the orchestrator that handled pii's result <- pii's step <- ... <- submit
    assert chain[:3] == ["step entities", "orchestrator step.result", "step pii"]
    assert step.name == "task.submit"
