"""The HTTP API over real HTTP and real Redis (no orchestrator running: the contract alone)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from specialists.builtin import BUILTINS
from specialists.manifest import Manifest
from swarm import names
from swarm.catalog import SpecialistRecord, put_specialist
from swarm.messages import Envelope, TaskEvent, TaskSubmitted
from swarm.settings import Settings
from swarm.tasks import TaskRecord, TaskStore

from apiserver import api_server
from conftest import free_port
from redisfixture import TEST_REDIS_URL

SQL_INPUT = {"question": "How many?", "schema": "CREATE TABLE t (id INT);"}


@pytest.fixture
async def catalog(redis: Redis) -> None:
    for definition in BUILTINS.values():
        manifest = Manifest.model_validate(definition.manifest())
        await put_specialist(
            redis,
            SpecialistRecord(
                name=definition.name,
                version=manifest.version,
                status="ready",
                description=manifest.description,
                manifest=manifest.model_dump(mode="json"),
            ),
        )
    await put_specialist(
        redis, SpecialistRecord(name="broken", status="rejected", reason="LoRA rank 128 too big")
    )


def settings(**changes: Any) -> Settings:
    return Settings(**{"redis_url": TEST_REDIS_URL, "vllm_urls": [], **changes})


@pytest.fixture
def api(catalog: None) -> Iterator[str]:
    with api_server(settings(), free_port()) as url:
        yield url


def problem(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"]
    return str(body["detail"])


async def test_submit_stores_the_task_and_hands_it_to_orchestrators(api: str, redis: Redis) -> None:
    async with httpx.AsyncClient(base_url=api) as client:
        response = await client.post(
            "/v1/tasks", json={"input": {"text": "hi", **SQL_INPUT}, "plan": ["pii", "sql"]}
        )
        assert response.status_code == 202
        accepted = response.json()
        assert response.headers["location"] == f"/v1/tasks/{accepted['id']}"
        task = (await client.get(f"/v1/tasks/{accepted['id']}")).json()
    assert task["state"] == "submitted" and "owner" not in task
    assert [(s["id"], s["specialist"], s["depends_on"]) for s in task["steps"]] == [
        ("s1", "pii", []),
        ("s2", "sql", ["s1"]),
    ]
    [(_id, fields)] = await redis.xrange(names.TASKS_STREAM)
    message = Envelope.decode(fields[b"m"])
    assert message.task_id == accepted["id"] and isinstance(message.body, TaskSubmitted)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"input": "x"}, 422, "pass either a 'plan'"),
        (
            {"input": "x", "plan": ["nope"]},
            422,
            "no specialist named 'nope'; registered: entities, pii, sql",
        ),
        ({"input": "x", "plan": ["broken"]}, 422, "was rejected: LoRA rank 128 too big"),
        (
            {
                "input": "x",
                "plan": [
                    {"id": "a", "specialist": "pii", "depends_on": ["b"]},
                    {"id": "b", "specialist": "pii", "depends_on": ["a"]},
                ],
            },
            422,
            "the plan has a cycle: a -> b -> a",
        ),
        (
            {"input": "x", "plan": [{"id": "a", "specialist": "pii", "depends_on": ["z"]}]},
            422,
            "depends on unknown step(s): z",
        ),
        (
            {
                "input": "x",
                "plan": [{"id": "a", "specialist": "pii"}, {"id": "a", "specialist": "pii"}],
            },
            422,
            "duplicate step id(s): a",
        ),
        ({"input": "x", "plan": ["pii"] * 17}, 422, "at most 16 are allowed"),
        (
            {"input": "x", "plan": ["sql"]},
            422,
            "step 's1' (sql) needs input field(s) question, schema",
        ),
        ({"input": {"text": 5}, "plan": ["pii"]}, 422, "input at text: 5 is not of type 'string'"),
        ({"plan": ["pii"]}, 422, "input: Field required"),
        (
            {"input": "x", "plan": ["pii"], "colour": 1},
            422,
            "colour: Extra inputs are not permitted",
        ),
    ],
)
async def test_bad_input_gets_a_problem_that_says_what_to_fix(
    api: str, body: dict[str, Any], status: int, detail: str
) -> None:
    async with httpx.AsyncClient(base_url=api) as client:
        response = await client.post("/v1/tasks", json=body)
    assert detail in problem(response, status)


async def test_malformed_json_and_oversize_bodies(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as client:
        response = await client.post(
            "/v1/tasks", content=b'{"input": ', headers={"content-type": "application/json"}
        )
        assert "not valid JSON" in problem(response, 400)
        huge = json.dumps({"input": "x" * (2 << 20), "plan": ["pii"]})
        response = await client.post(
            "/v1/tasks", content=huge, headers={"content-type": "application/json"}
        )
        assert "larger than 1048576 bytes" in problem(response, 413)
        assert "no task" in problem(await client.get("/v1/tasks/nope"), 404)


async def test_idempotency_key_returns_the_same_task(api: str, redis: Redis) -> None:
    body = {"input": "x", "plan": ["pii"]}
    async with httpx.AsyncClient(base_url=api) as client:
        first = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k1"})
        again = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k1"})
        other = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k2"})
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert await redis.xlen(names.TASKS_STREAM) == 2


async def test_auth_isolates_tasks_by_key(catalog: None) -> None:
    with api_server(settings(api_keys="alice-key,bob-key"), free_port()) as url:  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=url) as client:
            anonymous = await client.post("/v1/tasks", json={"input": "x", "plan": ["pii"]})
            assert "Bearer" in problem(anonymous, 401)
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            alice = {"Authorization": "Bearer alice-key"}
            bob = {"Authorization": "Bearer bob-key"}
            created = await client.post(
                "/v1/tasks", json={"input": "x", "plan": ["pii"]}, headers=alice
            )
            task_id = created.json()["id"]
            assert (await client.get(f"/v1/tasks/{task_id}", headers=alice)).status_code == 200
            problem(await client.get(f"/v1/tasks/{task_id}", headers=bob), 404)
            problem(await client.delete(f"/v1/tasks/{task_id}", headers=bob), 404)
            problem(await client.get(f"/v1/tasks/{task_id}/events", headers=bob), 404)
            assert (await client.get("/healthz")).status_code == 200


async def test_events_replay_exactly_what_was_missed(api: str, redis: Redis) -> None:
    store = TaskStore(redis)
    await store.create(TaskRecord(id="t1", input="x", state="submitted"))
    for kind in ("step.started", "step.completed"):
        await store.update("t1", lambda t, k=kind: [TaskEvent(kind=k, step_id="s1")])  # type: ignore[misc]
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        seen = await read_events(client, "/v1/tasks/t1/events", {}, count=2)
        assert [e["event"] for e in seen] == ["state", "step.started"]

        def finish(task: TaskRecord) -> list[TaskEvent]:
            task.state = "completed"
            return [
                TaskEvent(kind="step.completed", step_id="s2"),
                TaskEvent(kind="state", state="completed"),
            ]

        await store.update("t1", finish)
        rest = await read_events(client, "/v1/tasks/t1/events", {"Last-Event-ID": seen[-1]["id"]})
    assert [e["event"] for e in rest] == ["step.completed", "step.completed", "state"]
    assert json.loads(rest[-1]["data"])["state"] == "completed"
    ids = [e["id"] for e in seen + rest]
    assert len(set(ids)) == 5 and ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


async def read_events(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], count: int | None = None
) -> list[dict[str, str]]:
    """Read SSE events until ``count`` (then disconnect) or until the server closes."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with client.stream("GET", path, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if not line:
                if current:
                    events.append(current)
                    current = {}
                    if count is not None and len(events) == count:
                        break
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            current[field] = value
    return events


async def test_cancel(api: str, redis: Redis) -> None:
    async with httpx.AsyncClient(base_url=api) as client:
        task_id = (await client.post("/v1/tasks", json={"input": "x", "plan": ["pii"]})).json()[
            "id"
        ]
        response = await client.delete(f"/v1/tasks/{task_id}")
        assert response.status_code == 202
        assert response.json()["state"] == "canceled"
        assert response.json()["steps"][0]["status"] == "canceled"
        assert "already canceled" in problem(await client.delete(f"/v1/tasks/{task_id}"), 409)
    assert await redis.exists(names.canceled_key(task_id))
    kinds = [Envelope.decode(f[b"m"]).body.type for _i, f in await redis.xrange(names.TASKS_STREAM)]
    assert kinds == ["task.submitted", "task.cancel"]


async def test_specialists_health_readiness_and_metrics(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as client:
        listed = {s["name"]: s for s in (await client.get("/v1/specialists")).json()}
        assert listed["sql"]["status"] == "ready" and listed["sql"]["description"]
        assert listed["broken"] == {
            "name": "broken",
            "version": None,
            "status": "rejected",
            "description": "",
            "reason": "LoRA rank 128 too big",
            "eval_summary": None,
        }
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        await client.post("/v1/tasks", json={"input": "x", "plan": ["pii"]})
        text = (await client.get("/metrics")).text
    for series in (
        "swarm_tasks_submitted_total",
        "swarm_http_requests_total",
        "swarm_http_request_seconds_bucket",
        "swarm_stream_length",
    ):
        assert series in text


async def test_readyz_names_what_is_down(catalog: None) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with api_server(settings(vllm_urls=[dead]), free_port()) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert f"vllm {dead}" in problem(await client.get("/readyz"), 503)


async def test_openapi_documents_every_route(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as client:
        spec = (await client.get("/openapi.json")).json()
    assert {
        "/v1/tasks",
        "/v1/tasks/{task_id}",
        "/v1/tasks/{task_id}/events",
        "/v1/specialists",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(spec["paths"])
