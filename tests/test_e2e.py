"""End to end over HTTP: the API, orchestrators, a worker and the registry, real Redis, real vLLM.

The specialists are the shipped adapters on the default base model, so their answers are real
model output: a step may be refused by its validator, which the task then
reports. The assertions hold either way: every step that completed passed its validation, the
handoff carried the redacted text, and nothing was lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from orchestrator.planner import ModelPlanner
from orchestrator.runner import Orchestrator
from specialists.builtin import BUILTINS
from specialists.registry import Registry
from specialists.worker import Worker
from swarm.serving.basemodel import served_base_name
from swarm.serving.modelclient import ModelClient
from swarm.settings import Settings
from swarm.tasks import TaskStore

from adapterfactory import write_manifest
from apiserver import api_server
from conftest import VllmServer, free_port
from redisfixture import TEST_REDIS_URL

pytestmark = pytest.mark.slow

ADAPTERS = Path(__file__).parents[1] / "adapters"
TEXT = "Please email John Smith at john.smith@example.com about the Acme Corp order in Paris."
SQL_FIELDS = {
    "question": "How many orders are there?",
    "schema": "CREATE TABLE orders (id INTEGER, customer TEXT, total REAL);",
}


@pytest.fixture
def settings(vllm_server: VllmServer) -> Settings:
    for folder in vllm_server.adapters_dir.iterdir():
        shutil.rmtree(folder)
    for name in BUILTINS:
        shutil.copytree(ADAPTERS / name, vllm_server.adapters_dir / name)
    return vllm_server.settings.model_copy(
        update={"redis_url": TEST_REDIS_URL, "heartbeat_timeout_s": 2.0}
    )


@pytest.fixture
async def runtime(settings: Settings, redis: Redis) -> AsyncIterator[Settings]:
    """Registry synced once, then one orchestrator and one worker in this process."""
    client = ModelClient(settings)
    await Registry(redis, settings, client).sync_once()
    planner = ModelPlanner(client, served_base_name(settings))
    orchestrator = Orchestrator(redis, settings, planner, sweep_interval_s=0.2)
    orchestrator.start()
    worker = Worker(redis, settings, client, base_model=served_base_name(settings))
    worker_task = asyncio.create_task(worker.run())
    try:
        yield settings
    finally:
        worker.stop()
        await worker_task
        await orchestrator.close()
        await client.aclose()


@pytest.fixture
def api(runtime: Settings) -> Iterator[str]:
    with api_server(runtime, free_port()) as url:
        yield url


async def wait_done(
    client: httpx.AsyncClient, task_id: str, timeout_s: float = 240
) -> dict[str, Any]:
    for _ in range(int(timeout_s / 0.25)):
        task = (await client.get(f"/v1/tasks/{task_id}")).json()
        if task["state"] in ("completed", "failed", "canceled", "rejected"):
            return task
        await asyncio.sleep(0.25)
    raise AssertionError(f"task {task_id} did not finish: {task}")


def check_steps(task: dict[str, Any]) -> None:
    """Every completed step passed its specialist's validation; a failed one says why."""
    for step in task["steps"]:
        if step["status"] == "completed":
            builtin = BUILTINS[step["specialist"]]
            assert builtin.check is None or builtin.check(step["input"], step["output"]) is None
            assert step["latency_ms"] > 0 and step["tokens"]["completion"] > 0
            assert 1 <= step["attempts"] <= 3
        if step["status"] == "failed":
            assert step["error"].startswith("invalid output")
    if task["state"] == "failed":
        assert "failed: invalid output" in task["reason"]


async def test_three_step_task_through_http(api: str) -> None:
    body = {"input": {"text": TEXT, **SQL_FIELDS}, "plan": ["pii", "entities", "sql"]}
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        response = await client.post("/v1/tasks", json=body)
        assert response.status_code == 202
        task = await wait_done(client, response.json()["id"])
    assert task["state"] in ("completed", "failed"), task
    check_steps(task)
    pii, entities, sql = task["steps"]
    assert pii["input"] == {"text": TEXT}
    # The flagship plan, its outputs asserted: what pii lists it redacts and what it redacts
    # it lists; the email is hidden; the company is no person; entities reads the redacted
    # text and reports no placeholder as an entity.
    assert task["state"] == "completed", task
    redacted, spans = pii["output"]["redacted_text"], pii["output"]["spans"]
    assert "john.smith@example.com" not in redacted and "[EMAIL]" in redacted
    for span in spans:
        assert span["text"] not in redacted and f"[{span['type']}]" in redacted
    assert redacted.count("[") == sum(redacted.count(f"[{s['type']}]") for s in {
        s["type"]: s for s in spans}.values())  # fmt: skip
    assert {"text": "Acme Corp", "type": "PERSON"} not in spans
    assert entities["input"] == {"text": redacted}  # the handoff
    for entity in entities["output"]["entities"]:
        assert "[" not in entity["text"] and entity["text"] not in ("PERSON", "EMAIL")
    assert task["result"] == sql["output"]
    assert sql["input"] == SQL_FIELDS


def bounded(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every string and array bounded, so a small model cannot ramble: a string
    of 100 characters is at most 100 tokens, so a one-string answer such as ``sql``'s fits its
    128 (the pretrained base, prompt-only, writes a number until the grammar stops it)."""
    out = dict(schema)
    if out.get("type") == "string":
        out.setdefault("maxLength", 100)
    if out.get("type") == "array":
        out.setdefault("maxItems", 4)
        out["items"] = bounded(out["items"])
    if "properties" in out:
        out["properties"] = {k: bounded(v) for k, v in out["properties"].items()}
    return out


async def test_three_steps_complete_on_real_vllm_with_schema_checked_specialists(
    runtime: Settings, redis: Redis, vllm_server: VllmServer
) -> None:
    """Copies of the built-ins under other names (so only their schemas check the output)."""
    renamed = {"redact": "pii", "extract": "entities", "query": "sql"}
    for name, builtin in renamed.items():
        manifest = BUILTINS[builtin].manifest.document()
        manifest["name"] = name
        manifest["output_schema"] = bounded(manifest["output_schema"])
        write_manifest(vllm_server.adapters_dir / name, manifest)
    async with ModelClient(runtime) as client:
        await Registry(redis, runtime, client).sync_once()
    body = {"input": {"text": TEXT, **SQL_FIELDS}, "plan": list(renamed)}
    with api_server(runtime, free_port()) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            task = await wait_done(client, (await client.post("/v1/tasks", json=body)).json()["id"])
    assert task["state"] == "completed", task
    redact, extract, query = task["steps"]
    assert extract["input"] == {"text": redact["output"]["redacted_text"]}
    assert query["input"] == SQL_FIELDS and task["result"] == query["output"]
    assert all(s["tokens"]["completion"] > 0 and s["adapter"] is None for s in task["steps"])


async def test_a_goal_is_planned_by_the_model_or_the_rules(api: str) -> None:
    body = {"input": TEXT, "goal": "redact the personal data in this text"}
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        task_id = (await client.post("/v1/tasks", json=body)).json()["id"]
        task = await wait_done(client, task_id)
    assert task["plan_source"] in ("planner", "rules")
    assert task["steps"] and all(s["specialist"] in BUILTINS for s in task["steps"])
    check_steps(task)


async def test_events_replay_after_a_disconnect_and_cancel(api: str) -> None:
    body = {"input": {"text": TEXT, **SQL_FIELDS}, "plan": ["pii", "entities", "sql"]}
    async with httpx.AsyncClient(base_url=api, timeout=60) as client:
        task_id = (await client.post("/v1/tasks", json=body)).json()["id"]
        first: list[dict[str, str]] = []
        async with client.stream("GET", f"/v1/tasks/{task_id}/events") as stream:
            async for event in sse(stream):
                first.append(event)
                if event["event"] == "step.started":
                    break  # disconnect mid-task
        cancel = await client.post(f"/v1/tasks/{task_id}/cancel")
        assert cancel.status_code in (202, 409)
        rest = []
        headers = {"Last-Event-ID": first[-1]["id"]}
        async with client.stream("GET", f"/v1/tasks/{task_id}/events", headers=headers) as stream:
            rest = [event async for event in sse(stream)]
        everything = []
        async with client.stream("GET", f"/v1/tasks/{task_id}/events") as stream:
            everything = [event async for event in sse(stream)]
        task = (await client.get(f"/v1/tasks/{task_id}")).json()
    assert [e["id"] for e in first + rest] == [e["id"] for e in everything]
    if cancel.status_code == 202:
        assert task["state"] == "canceled"
        assert json.loads(everything[-1]["data"])["state"] == "canceled"


async def sse(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line:
            field, _, value = line.partition(": ")
            event[field] = value
        elif event:
            yield event
            event = {}


async def test_idempotency_and_bad_input_end_to_end(api: str) -> None:
    body = {"input": TEXT, "plan": ["pii"]}
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        first = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "same"})
        second = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "same"})
        assert first.json()["id"] == second.json()["id"]
        refused = await client.post("/v1/tasks", json={"input": TEXT, "plan": ["sql"]})
        assert refused.status_code == 422 and "'question' and 'schema'" in refused.json()["detail"]
        await wait_done(client, first.json()["id"])


async def test_a_killed_orchestrator_is_replaced_and_the_task_finishes(
    settings: Settings, redis: Redis
) -> None:
    """The only orchestrator is SIGKILLed mid-task; a new one picks the task up."""
    client = ModelClient(settings)
    await Registry(redis, settings, client).sync_once()
    worker = Worker(redis, settings, client, base_model=served_base_name(settings))
    worker_task = asyncio.create_task(worker.run())
    env = {
        **os.environ,
        "SWARM_REDIS_URL": TEST_REDIS_URL,
        "SWARM_VLLM_URLS": settings.vllm_urls[0],
        "SWARM_HEARTBEAT_TIMEOUT_S": "2",
    }
    swarm = Path(sys.executable).with_name("swarm")
    doomed = await asyncio.create_subprocess_exec(str(swarm), "orchestrator", env=env)
    replacement: Orchestrator | None = None
    try:
        with api_server(settings, free_port()) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                body = {"input": {"text": TEXT, **SQL_FIELDS}, "plan": ["pii", "entities", "sql"]}
                task_id = (await http.post("/v1/tasks", json=body)).json()["id"]
                store = TaskStore(redis)
                for _ in range(400):
                    if (await store.get(task_id)).state == "working":
                        break
                    await asyncio.sleep(0.1)
                doomed.send_signal(signal.SIGKILL)
                await doomed.wait()
                replacement = Orchestrator(
                    redis, settings, ModelPlanner(client, served_base_name(settings))
                )
                replacement.start()
                task = await wait_done(http, task_id)
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()
        if replacement is not None:
            await replacement.close()
        worker.stop()
        await worker_task
        await client.aclose()
    assert task["state"] in ("completed", "failed")
    assert all(s["status"] in ("completed", "failed", "skipped") for s in task["steps"])
    check_steps(task)


async def test_auth_isolation_end_to_end(runtime: Settings) -> None:
    keys = [SecretStr("a-key"), SecretStr("b-key")]
    with api_server(runtime.model_copy(update={"api_keys": keys}), free_port()) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            a = {"Authorization": "Bearer a-key"}
            task_id = (
                await http.post("/v1/tasks", json={"input": TEXT, "plan": ["pii"]}, headers=a)
            ).json()["id"]
            b = {"Authorization": "Bearer b-key"}
            assert (await http.get(f"/v1/tasks/{task_id}", headers=b)).status_code == 404
            assert (await http.get(f"/v1/tasks/{task_id}")).status_code == 401
            for _ in range(960):
                task = (await http.get(f"/v1/tasks/{task_id}", headers=a)).json()
                if task["state"] in ("completed", "failed"):
                    break
                await asyncio.sleep(0.25)
    assert task["state"] in ("completed", "failed")
