"""The HTTP API over real HTTP and real Redis (no orchestrator running: the contract alone).

State and events that an orchestrator would write are written here through TaskStore.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from swarm import names
from swarm.catalog import SpecialistRecord, put_specialist
from swarm.http.app import create_app
from swarm.messages import Cancel, Envelope, TaskEvent, TaskSubmitted, TokenUsage
from swarm.settings import Settings
from swarm.tasks import TaskRecord, TaskStore

from apiserver import put_builtins, serve_app
from conftest import free_port
from openaistub import openai_stub

pytestmark = pytest.mark.redis_backends

SQL_INPUT = {"question": "How many?", "schema": "CREATE TABLE t (id INT);"}
PROBLEM = "application/problem+json"


@pytest.fixture
async def catalog(redis: Redis) -> None:
    """The built-in specialists, ready, and one rejected folder."""
    await put_builtins(redis)


def settings(redis_url: str, **changes: Any) -> Settings:
    return Settings(**{"redis_url": redis_url, "vllm_urls": [], **changes})


def serve(app: FastAPI) -> AbstractContextManager[str]:
    """Run an app under uvicorn in a thread on a free port."""
    return serve_app(app, free_port())


FAST = {"api_sse_keepalive_s": 0.2, "api_idempotency_wait_s": 1.0}
"""Timers short enough for tests."""


@pytest.fixture
async def api(catalog: None, redis_url: str) -> AsyncIterator[str]:
    with serve(create_app(settings(redis_url, **FAST))) as url:
        yield url


@pytest.fixture
async def client(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        yield http


def problem(response: httpx.Response, status: int, kind: str | None = None) -> str:
    """Assert a problem-details answer; return its detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("tag:swarm")
    if kind:
        assert body["type"].endswith("/" + kind), body
    assert body["detail"]
    return str(body["detail"])


async def submit(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> str:
    response = await client.post("/v1/tasks", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def submitted(redis: Redis) -> list[Envelope]:
    entries: Any = await redis.xrange(names.TASKS_STREAM)
    return [Envelope.decode(fields[b"m"]) for _id, fields in entries]


# --- submission ---------------------------------------------------------------------------------


async def test_a_task_is_stored_then_handed_to_the_orchestrators(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    body = {"input": {"text": "hi", **SQL_INPUT}, "plan": ["pii", "sql"], "deadline_s": 60}
    response = await client.post("/v1/tasks", json=body)
    assert response.status_code == 202
    accepted = response.json()
    link = f"/v1/tasks/{accepted['id']}"
    assert response.headers["location"] == link
    assert accepted == {
        "id": accepted["id"],
        "state": "submitted",
        "links": {"self": link, "events": f"{link}/events"},
    }
    task = (await client.get(link)).json()
    assert task["state"] == "submitted" and task["plan_source"] == "explicit"
    assert "owner" not in task
    assert [(s["id"], s["specialist"], s["depends_on"]) for s in task["steps"]] == [
        ("s1", "pii", []),
        ("s2", "sql", ["s1"]),
    ]
    deadline = datetime.fromisoformat(task["deadline"])
    assert timedelta(seconds=55) < deadline - datetime.now(UTC) <= timedelta(seconds=60)
    [message] = await submitted(redis)
    assert message.task_id == accepted["id"] and isinstance(message.body, TaskSubmitted)
    assert [s.specialist for s in message.body.plan or []] == ["pii", "sql"]
    assert message.body.deadline == deadline and message.body.owner is None


async def test_a_goal_is_left_to_the_planner_and_a_graph_plan_is_kept(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    goal_id = await submit(client, {"input": "Call +1 555 0100", "goal": "redact it"})
    goal_task = (await client.get(f"/v1/tasks/{goal_id}")).json()
    assert goal_task["steps"] == [] and goal_task["plan_source"] is None
    assert goal_task["goal"] == "redact it"
    graph = [
        {"id": "redact", "specialist": "pii"},
        {"id": "names", "specialist": "entities", "depends_on": ["redact"]},
        {"id": "also", "specialist": "entities", "depends_on": ["redact"]},
    ]
    deadline = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    graph_id = await submit(
        client, {"input": "Ann met Bob", "plan": graph, "deadline": deadline.isoformat()}
    )
    graph_task = (await client.get(f"/v1/tasks/{graph_id}")).json()
    assert [s["depends_on"] for s in graph_task["steps"]] == [[], ["redact"], ["redact"]]
    assert datetime.fromisoformat(graph_task["deadline"]) == deadline
    first, _second = await submitted(redis)
    assert isinstance(first.body, TaskSubmitted) and first.body.plan is None
    assert first.body.goal == "redact it"


CYCLE = [
    {"id": "a", "specialist": "pii", "depends_on": ["c"]},
    {"id": "b", "specialist": "pii", "depends_on": ["a"]},
    {"id": "c", "specialist": "pii", "depends_on": ["b"]},
]
PAST = (datetime.now(UTC) - timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("body", "kind", "detail"),
    [
        ({"input": "x"}, "invalid-request", "pass either a 'plan'"),
        (
            {"input": "x", "plan": ["nope"]},
            "unknown-specialist",
            "step 's1': no specialist named 'nope'; registered: entities, pii, sql",
        ),
        (
            {"input": "x", "plan": ["broken"]},
            "unknown-specialist",
            "'broken' is registered but was rejected: LoRA rank 128 too big",
        ),
        ({"input": "x", "plan": CYCLE}, "invalid-plan", "the plan has a cycle: a -> c -> b -> a"),
        (
            {"input": "x", "plan": [{"id": "a", "specialist": "pii", "depends_on": ["z"]}]},
            "invalid-plan",
            "step 'a' depends on unknown step(s): z",
        ),
        (
            {"input": "x", "plan": [{"id": "a", "specialist": "pii"}] * 2},
            "invalid-plan",
            "duplicate step id(s): a",
        ),
        ({"input": "x", "plan": ["pii"] * 17}, "invalid-plan", "17 steps; at most 16"),
        ({"input": "x", "plan": []}, "invalid-plan", "the plan is empty"),
        (
            {"input": "x", "plan": ["pii", {"id": "b", "specialist": "pii"}]},
            "invalid-plan",
            "either all specialist names or all steps",
        ),
        (
            {"input": "x", "plan": ["sql"]},
            "invalid-input",
            "step 's1' (sql) needs input fields 'question' and 'schema'; add them to the task "
            "input",
        ),
        (
            {"input": {"text": 5}, "plan": ["pii"]},
            "invalid-input",
            "input does not match its schema at text: 5 is not of type 'string'",
        ),
        ({"plan": ["pii"]}, "invalid-request", "input: Field required"),
        ({"input": 5, "plan": ["pii"]}, "invalid-request", "input: must be a string or a JSON"),
        ({"input": "", "plan": ["pii"]}, "invalid-request", "input: is empty"),
        ({"input": "x", "plan": ["pii"], "colour": 1}, "invalid-request", "colour: Extra inputs"),
        (
            {"input": "x", "plan": [{"id": "a"}]},
            "invalid-request",
            "plan.0.specialist: Field required",
        ),
        (
            {"input": "x", "plan": ["pii"], "deadline_s": -1},
            "invalid-request",
            "deadline_s: Input should be greater than 0",
        ),
        (
            {"input": "x", "plan": ["pii"], "deadline_s": 10**6},
            "invalid-deadline",
            "at most 86400 s is allowed",
        ),
        ({"input": "x", "plan": ["pii"], "deadline": PAST}, "invalid-deadline", "has passed"),
        (
            {"input": "x", "plan": ["pii"], "deadline": "2030-01-01T00:00:00"},
            "invalid-request",
            "deadline: Input should have timezone info",
        ),
        (
            {"input": "x", "plan": ["pii"], "deadline_s": 5, "deadline": PAST},
            "invalid-request",
            "pass 'deadline_s' or 'deadline', not both",
        ),
        (["pii"], "invalid-request", "Input should be a valid dictionary"),
    ],
)
async def test_bad_input_gets_a_problem_that_says_what_to_fix(
    client: httpx.AsyncClient, redis: Redis, body: Any, kind: str, detail: str
) -> None:
    response = await client.post("/v1/tasks", json=body)
    assert detail in problem(response, 422, kind)
    assert await redis.xlen(names.TASKS_STREAM) == 0


async def test_problems_carry_the_particulars(client: httpx.AsyncClient) -> None:
    unknown = (await client.post("/v1/tasks", json={"input": "x", "plan": ["sqll"]})).json()
    assert unknown["registered"] == ["entities", "pii", "sql"]
    assert unknown["instance"] == "/v1/tasks"
    invalid = await client.post("/v1/tasks", json={"plan": [{"id": 1}], "input": 2})
    errors = invalid.json()["errors"]
    assert {"location": "body", "pointer": "#/input", "detail": errors[0]["detail"]} in errors
    assert any(e["pointer"] == "#/plan/0/specialist" for e in errors)
    missing = (await client.post("/v1/tasks", json={"input": "x", "plan": ["sql"]})).json()
    assert missing["errors"][0]["pointer"] == "#/input"


async def test_malformed_oversize_and_misdirected_requests(client: httpx.AsyncClient) -> None:
    json_headers = {"content-type": "application/json"}
    response = await client.post("/v1/tasks", content=b'{"input": ', headers=json_headers)
    assert "not valid JSON" in problem(response, 400, "malformed-json")
    huge = json.dumps({"input": "x" * (2 << 20), "plan": ["pii"]}).encode()
    response = await client.post("/v1/tasks", content=huge, headers=json_headers)
    assert "larger than 1048576 bytes" in problem(response, 413, "body-too-large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(huge), 1 << 16):
            yield huge[start : start + (1 << 16)]

    response = await client.post("/v1/tasks", content=chunked(), headers=json_headers)
    assert "larger than 1048576 bytes" in problem(response, 413)
    small = json.dumps({"input": "x", "plan": ["pii"]}).encode()

    async def small_chunks() -> AsyncIterator[bytes]:
        yield small[:5]
        yield small[5:]

    response = await client.post("/v1/tasks", content=small_chunks(), headers=json_headers)
    assert response.status_code == 202
    assert "no task 'nope'" in problem(await client.get("/v1/tasks/nope"), 404, "task-not-found")
    assert "no route /v2/tasks" in problem(await client.get("/v2/tasks"), 404)
    response = await client.put("/v1/tasks", json={})
    assert "use GET, POST" in problem(response, 405) and response.headers["allow"] == "GET, POST"
    response = await client.post(
        "/v1/tasks", json={"input": "x", "plan": ["pii"]}, headers={"Idempotency-Key": "k" * 201}
    )
    assert "header idempotency-key: String should have at most 200" in problem(response, 422)


async def test_a_dead_redis_is_a_503_not_a_crash(catalog: None) -> None:
    dead = settings(f"redis://127.0.0.1:{free_port()}/0")
    with serve(create_app(dead)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/v1/tasks", json={"input": "x", "plan": ["pii"]})
            assert "Redis is unavailable" in problem(response, 503, "redis-unavailable")
            assert "redis: " in problem(await http.get("/readyz"), 503, "not-ready")
            assert (await http.get("/healthz")).json() == {"status": "ok"}


# --- idempotency --------------------------------------------------------------------------------


async def test_an_idempotency_key_answers_with_the_task_it_created(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    body = {"input": "x", "plan": ["pii"]}
    first = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k1"})
    again = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k1"})
    other = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k2"})
    assert first.status_code == 202 and again.status_code == 200 and other.status_code == 202
    assert first.json() == again.json() and first.json()["id"] != other.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert len(await submitted(redis)) == 2
    ttl = await redis.ttl(names.idempotency_key("anonymous", "k1"))
    assert 86_000 < ttl <= 86_400
    changed = await client.post(
        "/v1/tasks", json={"input": "y", "plan": ["pii"]}, headers={"Idempotency-Key": "k1"}
    )
    assert "already used for a different task" in problem(changed, 409, "idempotency-key-reused")


async def test_concurrent_repeats_of_one_key_make_one_task(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    body = {"input": "x", "plan": ["pii", "entities"]}
    responses = await asyncio.gather(
        *(
            client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "race"})
            for _ in range(8)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(await submitted(redis)) == 1


async def test_a_key_whose_first_request_never_finished_is_409(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await redis.set(names.idempotency_key("anonymous", "stuck"), "no-such-task")
    response = await client.post(
        "/v1/tasks", json={"input": "x", "plan": ["pii"]}, headers={"Idempotency-Key": "stuck"}
    )
    assert "still being processed" in problem(response, 409, "idempotency-key-in-use")


# --- auth ---------------------------------------------------------------------------------------


async def test_each_key_sees_only_its_own_tasks(
    catalog: None, redis: Redis, redis_url: str
) -> None:
    with serve(create_app(settings(redis_url, api_keys="alice-key,bob-key"))) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            body = {"input": "x", "plan": ["pii"]}
            alice = {"Authorization": "Bearer alice-key"}
            bob = {"Authorization": "Bearer bob-key"}
            created = await http.post("/v1/tasks", json=body, headers=alice)
            task_id = created.json()["id"]
            path = f"/v1/tasks/{task_id}"
            for method, route in [
                ("POST", "/v1/tasks"),
                ("GET", path),
                ("POST", f"{path}/cancel"),
                ("GET", f"{path}/events"),
                ("GET", "/v1/specialists"),
            ]:
                anonymous = await http.request(method, route, json=body)
                assert "Bearer" in problem(anonymous, 401, "unauthorized")
                assert anonymous.headers["www-authenticate"] == 'Bearer realm="swarm"'
                wrong = await http.request(
                    method, route, json=body, headers={"Authorization": "Bearer mallory"}
                )
                assert "not valid" in problem(wrong, 401)
                assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
            assert (await http.get(path, headers=alice)).status_code == 200
            for method, route in [
                ("GET", path),
                ("POST", f"{path}/cancel"),
                ("GET", f"{path}/events"),
            ]:
                problem(await http.request(method, route, headers=bob), 404, "task-not-found")
            # The same Idempotency-Key from another key is another task.
            with_key = {"Idempotency-Key": "k"}
            a = await http.post("/v1/tasks", json=body, headers=alice | with_key)
            b = await http.post("/v1/tasks", json=body, headers=bob | with_key)
            assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]
            for route in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
                assert (await http.get(route)).status_code == 200, route
    stored = await TaskStore(redis).get(task_id)
    assert stored.owner == hashlib.sha256(b"alice-key").hexdigest()


# --- listing -----------------------------------------------------------------------------------


async def test_tasks_are_listed_newest_first_a_page_at_a_time(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    ids = [await submit(client, {"input": f"text {n}", "plan": ["pii"]}) for n in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/tasks", params=params)).json()
        assert len(page["tasks"]) <= 2
        seen += [t["id"] for t in page["tasks"]]
        assert all("owner" not in t and t["steps"][0]["specialist"] == "pii" for t in page["tasks"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    # A record that expired leaves the list (and the index) when met.
    await redis.delete(names.task_key(ids[2]))
    listed = (await client.get("/v1/tasks")).json()
    assert [t["id"] for t in listed["tasks"]] == [ids[4], ids[3], ids[1], ids[0]]
    assert listed["next_cursor"] is None
    assert ids[2].encode() not in await redis.zrange(names.task_index_key("anonymous"), 0, -1)


async def test_tasks_are_filtered_by_state_specialist_and_time(
    client: httpx.AsyncClient,
) -> None:
    before = datetime.now(UTC)
    pii = await submit(client, {"input": "Call Ann", "plan": ["pii"]})
    sql = await submit(client, {"input": SQL_INPUT, "plan": ["sql"]})
    await client.post(f"/v1/tasks/{sql}/cancel")
    after = datetime.now(UTC)

    async def listed(**params: Any) -> list[str]:
        response = await client.get("/v1/tasks", params=params)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["tasks"]]

    assert await listed(state="canceled") == [sql]
    assert await listed(state="submitted") == [pii]
    assert await listed(specialist="pii") == [pii]
    assert await listed(specialist="entities") == []
    assert await listed(since=before.isoformat(), until=after.isoformat()) == [sql, pii]
    assert await listed(since=after.isoformat()) == []
    assert await listed(until=before.isoformat()) == []
    # A time without an offset is UTC.
    assert await listed(since=before.replace(tzinfo=None).isoformat()) == [sql, pii]
    for bad in ({"state": "sleeping"}, {"limit": 0}, {"limit": 101}, {"cursor": "x"},
                {"since": "yesterday"}):  # fmt: skip
        problem(await client.get("/v1/tasks", params=bad), 422)


async def test_each_key_lists_only_its_own_tasks(catalog: None, redis_url: str) -> None:
    with serve(create_app(settings(redis_url, api_keys="alice-key,bob-key"))) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            alice = {"Authorization": "Bearer alice-key"}
            bob = {"Authorization": "Bearer bob-key"}
            mine = (await http.post("/v1/tasks", json={"input": "x", "plan": ["pii"]},
                                    headers=alice)).json()["id"]  # fmt: skip
            assert [t["id"] for t in (await http.get("/v1/tasks", headers=alice)).json()[
                "tasks"]] == [mine]  # fmt: skip
            assert (await http.get("/v1/tasks", headers=bob)).json()["tasks"] == []
            problem(await http.get("/v1/tasks"), 401, "unauthorized")


# --- task state and events ----------------------------------------------------------------------


async def test_a_task_shows_every_step_and_its_result(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    task_id = await submit(client, {"input": "Ann", "plan": ["pii"]})

    def finish(task: TaskRecord) -> list[TaskEvent]:
        step = task.steps[0]
        step.status, step.output, step.adapter_version = "completed", {"redacted_text": "X"}, "1.2"
        step.latency_ms, step.tokens, step.attempts = 12.5, TokenUsage(prompt=9, completion=4), 2
        step.escalated = True
        task.state, task.result = "completed", {"redacted_text": "X"}
        return [TaskEvent(kind="state", state="completed")]

    await TaskStore(redis).update(task_id, finish)
    task = (await client.get(f"/v1/tasks/{task_id}")).json()
    assert task["state"] == "completed" and task["result"] == {"redacted_text": "X"}
    [step] = task["steps"]
    assert step["adapter_version"] == "1.2" and step["latency_ms"] == 12.5
    assert step["tokens"] == {"prompt": 9, "completion": 4}
    assert step["attempts"] == 2 and step["escalated"] is True
    assert step["output"] == {"redacted_text": "X"}


async def read_events(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str] | None = None,
    count: int | None = None,
    comments: list[str] | None = None,
) -> list[dict[str, str]]:
    """Read SSE events until ``count`` (then disconnect) or until the server closes."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with client.stream("GET", path, headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith(":"):
                if comments is not None:
                    comments.append(line)
                continue
            if line:
                field, _, value = line.partition(": ")
                current[field] = value
                continue
            if current:
                events.append(current)
                current = {}
                if count is not None and len(events) == count:
                    break
    return events


def stream_order(event_id: str) -> tuple[int, ...]:
    return tuple(map(int, event_id.split("-")))


async def test_events_replay_exactly_what_was_missed(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    store = TaskStore(redis)
    await store.create(TaskRecord(id="t1", input="x"))
    for kind in ("step.started", "step.completed"):
        await store.update("t1", lambda t, k=kind: [TaskEvent(kind=k, step_id="s1")])  # type: ignore[misc]
    seen = await read_events(client, "/v1/tasks/t1/events", count=2)  # then disconnect
    assert [e["event"] for e in seen] == ["state", "step.started"]

    def finish(task: TaskRecord) -> list[TaskEvent]:
        task.state = "completed"
        return [
            TaskEvent(kind="step.completed", step_id="s2"),
            TaskEvent(kind="state", state="completed", detail={"result": 1}),
        ]

    await store.update("t1", finish)
    rest = await read_events(client, "/v1/tasks/t1/events", {"Last-Event-ID": seen[-1]["id"]})
    assert [e["event"] for e in rest] == ["step.completed", "step.completed", "state"]
    final = json.loads(rest[-1]["data"])
    assert final == {
        "kind": "state",
        "state": "completed",
        "step_id": None,
        "detail": {"result": 1},
        "reason": None,
    }
    everything = await read_events(client, "/v1/tasks/t1/events")
    ids = [e["id"] for e in seen + rest]
    assert ids == [e["id"] for e in everything] == sorted(ids, key=stream_order)
    assert len(set(ids)) == 5
    logged = [event_id for event_id, _e in await store.events("t1")]
    assert ids == logged  # the SSE ids are the Redis stream entry ids
    after = await read_events(client, f"/v1/tasks/t1/events?after={ids[2]}")
    assert [e["id"] for e in after] == ids[3:]
    bad = await client.get("/v1/tasks/t1/events", headers={"Last-Event-ID": "yesterday"})
    assert "'yesterday' is not an event id" in problem(bad, 400, "invalid-event-id")
    # Digits outside ASCII are digits to str.isdigit, and a 500 from int() or from Redis.
    for odd in ("\u00b2", "1-\u0663"):
        bad = await client.get("/v1/tasks/t1/events", params={"after": odd})
        assert "should match pattern" in problem(bad, 422, "invalid-request")  # the schema's
        bad = await client.get("/v1/tasks/t1/events", headers={"Last-Event-ID": odd.encode()})
        assert "is not an event id" in problem(bad, 400, "invalid-event-id")


async def test_events_follow_live_with_keepalives_until_the_task_ends(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    store = TaskStore(redis)
    await store.create(TaskRecord(id="t2", input="x"))
    comments: list[str] = []
    reader = asyncio.create_task(read_events(client, "/v1/tasks/t2/events", comments=comments))
    await asyncio.sleep(0.7)  # several keep-alive periods with nothing to say
    assert not reader.done()

    def work(task: TaskRecord) -> list[TaskEvent]:
        task.state = "working"
        return [TaskEvent(kind="state", state="working")]

    def fail(task: TaskRecord) -> list[TaskEvent]:
        task.state, task.reason = "failed", "boom"
        return [TaskEvent(kind="state", state="failed", reason="boom")]

    await store.update("t2", work)
    await asyncio.sleep(0.1)
    await store.update("t2", fail)
    events = await asyncio.wait_for(reader, 5)
    assert [json.loads(e["data"])["state"] for e in events] == ["submitted", "working", "failed"]
    assert ": keepalive" in comments


async def test_an_ended_task_whose_final_event_is_missing_still_closes(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    """A task ended by a writer that logged no event (or whose log was trimmed)."""
    await TaskStore(redis).create(TaskRecord(id="t3", input="x"))
    reader = asyncio.create_task(read_events(client, "/v1/tasks/t3/events"))
    await asyncio.sleep(0.3)
    await redis.hset(names.task_key("t3"), mapping={"state": "failed", "reason": "dead-lettered"})
    events = await asyncio.wait_for(reader, 5)
    assert [e["event"] for e in events] == ["state", "state"]
    assert "id" not in events[-1]
    assert json.loads(events[-1]["data"])["reason"] == "dead-lettered"


async def test_an_event_stream_is_bounded_in_time(
    catalog: None, redis: Redis, redis_url: str
) -> None:
    await TaskStore(redis).create(TaskRecord(id="t4", input="x"))
    quick = settings(redis_url, api_sse_keepalive_s=0.1, api_sse_max_s=0.5)
    with serve(create_app(quick)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            started = time.monotonic()
            comments: list[str] = []
            events = await read_events(http, "/v1/tasks/t4/events", comments=comments)
            assert time.monotonic() - started < 3
    assert [e["event"] for e in events] == ["state"]
    assert "reconnect with Last-Event-ID" in comments[-1]


async def test_a_quiet_event_stream_outlasts_the_redis_clients_default_timeout(
    catalog: None, redis: Redis, redis_url: str
) -> None:
    # The production defaults: a keepalive XREAD blocks 5 s, which is exactly redis-py's own
    # socket timeout; with that client every quiet stream broke off as "Redis is unavailable".
    await TaskStore(redis).create(TaskRecord(id="t5", input="x"))
    with serve(create_app(settings(redis_url, api_sse_max_s=30))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            comments: list[str] = []
            reader = asyncio.create_task(
                read_events(http, "/v1/tasks/t5/events", count=2, comments=comments)
            )
            await asyncio.sleep(6.5)

            def fail(task: TaskRecord) -> list[TaskEvent]:
                task.state = "failed"
                return [TaskEvent(kind="state", state="failed", reason="late")]

            await TaskStore(redis).update("t5", fail)
            events = await asyncio.wait_for(reader, 10)
    assert [json.loads(e["data"]).get("state") for e in events] == ["submitted", "failed"]
    assert comments == [": keepalive"]


# --- cancel -------------------------------------------------------------------------------------


async def test_cancel_ends_the_task_and_tells_the_workers(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    task_id = await submit(client, {"input": "x", "plan": ["pii", "entities"]})
    response = await client.post(
        f"/v1/tasks/{task_id}/cancel", params={"reason": "changed my mind"}
    )
    assert response.status_code == 202
    task = response.json()
    assert task["state"] == "canceled" and task["reason"] == "changed my mind"
    assert [s["status"] for s in task["steps"]] == ["canceled", "canceled"]
    assert "owner" not in task
    assert 0 < await redis.ttl(names.canceled_key(task_id)) <= 86_400
    messages = await submitted(redis)
    assert [type(m.body) for m in messages] == [TaskSubmitted, Cancel]
    assert isinstance(messages[1].body, Cancel) and messages[1].body.reason == "changed my mind"
    events = await read_events(client, f"/v1/tasks/{task_id}/events")
    assert json.loads(events[-1]["data"])["state"] == "canceled"
    again = await client.post(f"/v1/tasks/{task_id}/cancel")
    assert "is already canceled" in problem(again, 409, "task-ended")


async def test_a_finished_task_cannot_be_canceled(client: httpx.AsyncClient, redis: Redis) -> None:
    task_id = await submit(client, {"input": "x", "plan": ["pii"]})

    def complete(task: TaskRecord) -> list[TaskEvent]:
        task.state = "completed"
        return [TaskEvent(kind="state", state="completed")]

    await TaskStore(redis).update(task_id, complete)
    response = await client.post(f"/v1/tasks/{task_id}/cancel")
    assert "is already completed" in problem(response, 409, "task-ended")
    assert not await redis.exists(names.canceled_key(task_id))
    problem(await client.post("/v1/tasks/nope/cancel"), 404)


# --- specialists and operations ----------------------------------------------------------------


async def test_specialists_are_listed_with_status_reason_and_eval(
    client: httpx.AsyncClient,
) -> None:
    listed = {s["name"]: s for s in (await client.get("/v1/specialists")).json()}
    assert set(listed) == {"broken", "entities", "pii", "sql"}
    sql = listed["sql"]
    assert sql["status"] == "ready" and sql["description"] and sql["version"]
    assert sql["eval_summary"] == {"exact_match": 0.9}
    assert sql["input_schema"]["required"] == ["question", "schema"]
    assert listed["broken"] == {
        "name": "broken",
        "version": None,
        "status": "rejected",
        "description": "",
        "reason": "LoRA rank 128 too big",
        "input_schema": None,
        "eval_summary": None,
    }


async def test_readyz_checks_redis_and_every_model_server(catalog: None, redis_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with openai_stub([], free_port()) as vllm:
        with serve(create_app(settings(redis_url, vllm_urls=[vllm.url]))) as url:
            async with httpx.AsyncClient() as http:
                ready = await http.get(f"{url}/readyz")
            assert ready.status_code == 200
            assert ready.json() == {
                "status": "ready",
                "checks": {"redis": "ok", "vllm 1": "ok"},
            }
        with serve(create_app(settings(redis_url, vllm_urls=[vllm.url, dead]))) as url:
            async with httpx.AsyncClient() as http:
                response = await http.get(f"{url}/readyz")
    detail = problem(response, 503, "not-ready")
    assert "vllm 2: ConnectError" in detail
    assert response.json()["checks"]["vllm 1"] == "ok"
    # Internal addresses are not shown to whoever asks.
    assert dead.split("//")[1] not in response.text and vllm.url.split("//")[1] not in response.text


async def test_metrics_count_submissions_and_time_requests(
    client: httpx.AsyncClient,
) -> None:
    def value(text: str, series: str) -> float:
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0

    before = (await client.get("/metrics")).text
    await client.post("/v1/tasks", json={"input": "x", "plan": ["pii"]})
    await client.post("/v1/tasks", json={"input": "x", "plan": ["nope"]})
    await client.get("/v1/tasks/some-id")
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    for outcome, grew in [("accepted", 1), ("rejected", 1), ("duplicate", 0)]:
        series = f'swarm_tasks_submitted_total{{outcome="{outcome}"}}'
        assert value(after, series) - value(before, series) == grew, outcome
    assert 'route="/v1/tasks/{task_id}",status="404"' in after  # a template, not the raw path
    assert 'swarm_http_request_duration_seconds_bucket{le="0.005",method="POST"' in after
    for series in ("swarm_sse_streams", f'swarm_stream_length{{stream="{names.TASKS_STREAM}"}}'):
        assert series in after


async def test_openapi_documents_every_route_and_its_problems(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths) == {
        "/v1/tasks",
        "/v1/tasks/{task_id}",
        "/v1/tasks/{task_id}/events",
        "/v1/tasks/{task_id}/cancel",
        "/v1/specialists",
        "/healthz",
        "/readyz",
        "/metrics",
        "/.well-known/agent-card.json",
    }
    assert set(paths["/v1/tasks"]) == {"get", "post"}
    assert {"limit", "cursor", "state", "specialist", "since", "until"} == {
        p["name"] for p in paths["/v1/tasks"]["get"]["parameters"]
    }
    post = paths["/v1/tasks"]["post"]
    assert {"202", "200", "400", "401", "409", "413", "422", "503"} <= set(post["responses"])
    assert PROBLEM in post["responses"]["422"]["content"]
    assert post["tags"] == ["tasks"] and post["description"]
    assert (
        "text/event-stream"
        in paths["/v1/tasks/{task_id}/events"]["get"]["responses"]["200"]["content"]
    )
    schemas = spec["components"]["schemas"]
    assert schemas["TaskIn"]["examples"] and "owner" not in schemas["TaskOut"]["properties"]
    # Without keys no security scheme is declared: none is asked for.
    assert "securitySchemes" not in spec["components"]
    assert all(PROBLEM in r["content"] for op in paths["/v1/tasks/{task_id}"].values()
               for status, r in op["responses"].items() if status >= "400")  # fmt: skip
    cancel = paths["/v1/tasks/{task_id}/cancel"]["post"]
    assert {"202", "404", "409"} <= set(cancel["responses"])


async def test_a_server_with_keys_declares_its_bearer_scheme(redis_url: str) -> None:
    spec = create_app(settings(redis_url, api_keys=["k"])).openapi()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert paths_needing_auth(spec) >= {"/v1/tasks", "/v1/specialists"}


def paths_needing_auth(spec: dict[str, Any]) -> set[str]:
    return {
        path for path, ops in spec["paths"].items() if any("security" in o for o in ops.values())
    }


async def test_a_body_that_is_not_json_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/tasks", content=b"input=x", headers={"content-type": "text/plain"}
    )
    assert "not 'text/plain'" in problem(response, 415, "unsupported-media-type")
    response = await client.post(
        "/v1/tasks", content=b"", headers={"content-type": "application/json"}
    )
    assert "the request body is empty" in problem(response, 422, "invalid-request")


async def test_a_repeat_answers_with_its_task_after_the_catalog_changed(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    body = {"input": "x", "plan": ["pii"]}
    first = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "cat"})
    await put_specialist(redis, SpecialistRecord(name="pii", status="rejected", reason="gone"))
    again = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": "cat"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert "was rejected: gone" in problem(await client.post("/v1/tasks", json=body), 422)


async def test_a_stream_that_finds_the_task_ended_sends_the_events_it_missed_first(
    redis: Redis,
) -> None:
    """The window between an empty XREAD and reading the task's state: events logged with the
    final state in that window are sent, with their ids, not replaced by a summary."""
    from swarm.http.eventstream import final_event

    store = TaskStore(redis)
    await store.create(TaskRecord(id="t5", input="x"))
    [(last, _event)] = await store.events("t5")

    def finish(task: TaskRecord) -> list[TaskEvent]:
        task.state = "completed"
        return [
            TaskEvent(kind="step.completed", step_id="s1"),
            TaskEvent(kind="state", state="completed"),
        ]

    await store.update("t5", finish)
    rest = await final_event(store, "t5", last)
    assert rest is not None
    ids = [event_id for event_id, _e in await store.events("t5", after=last)]
    assert rest.count("id: ") == 2 and all(f"id: {i}\n" in rest for i in ids)
    assert "event: step.completed" in rest and rest.endswith('"reason":null}\n\n')


@pytest.mark.parametrize(
    ("host", "keys", "anonymous", "refused"),
    [
        ("127.0.0.1", [], False, False),
        ("::1", [], False, False),
        ("0.0.0.0", [], False, True),
        ("10.1.2.3", [], False, True),
        ("0.0.0.0", ["k"], False, False),
        ("0.0.0.0", [], True, False),
    ],
)
def test_the_api_serves_anonymously_only_on_loopback_or_when_told_to(
    host: str, keys: list[str], anonymous: bool, refused: bool
) -> None:
    from swarm.http.app import anonymous_problem

    settings = Settings(api_host=host, api_keys=keys, api_allow_anonymous=anonymous)  # type: ignore[arg-type]
    assert (anonymous_problem(settings) is not None) == refused


def test_swarm_api_refuses_to_start_open_on_every_interface() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SWARM_API_HOST": "0.0.0.0", "SWARM_API_KEYS": "",
           "SWARM_API_ALLOW_ANONYMOUS": "false"}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "swarm.cli", "api"], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith("error: refusing to serve the API on 0.0.0.0 without keys: set SWARM_API_KEYS")
    )


async def test_an_input_longer_than_the_cap_is_a_413_before_anything_is_stored(
    catalog: None, redis_url: str, redis: Redis
) -> None:
    app = create_app(settings(redis_url, max_input_chars=50, **FAST))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            response = await http.post("/v1/tasks", json={"input": "x" * 51, "plan": ["pii"]})
            assert "at most 50 (SWARM_MAX_INPUT_CHARS)" in problem(response, 413, "input-too-long")
            ok = await http.post("/v1/tasks", json={"input": "x" * 50, "plan": ["pii"]})
            assert ok.status_code == 202, ok.text
    assert len(await submitted(redis)) == 1


async def test_task_creation_is_rate_limited_per_key_across_replicas(
    catalog: None, redis_url: str
) -> None:
    keys = {"api_keys": ["alpha", "beta"], "api_tasks_per_minute": 3}
    body = {"input": "Mail ann@x.io", "plan": ["pii"]}
    with (
        serve(create_app(settings(redis_url, **keys, **FAST))) as one,
        serve(create_app(settings(redis_url, **keys, **FAST))) as two,
    ):
        async with httpx.AsyncClient(timeout=10) as http:
            if time.time() % 60 > 55:  # the count is per minute: start well inside one
                await asyncio.sleep(61 - time.time() % 60)
            alpha = {"authorization": "Bearer alpha"}
            codes = [
                (await http.post(f"{url}/v1/tasks", json=body, headers=alpha)).status_code
                for url in (one, two, one, two)
            ]
            beta = await http.post(f"{two}/v1/tasks", json=body,
                                   headers={"authorization": "Bearer beta"})  # fmt: skip
            limited = await http.post(f"{one}/v1/tasks", json=body, headers=alpha)
    assert codes == [202, 202, 202, 429]  # the two replicas share one count
    assert beta.status_code == 202  # another key has its own allowance
    assert "SWARM_API_TASKS_PER_MINUTE" in problem(limited, 429, "rate-limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 60


async def test_event_streams_are_capped_per_key_with_a_429(catalog: None, redis_url: str) -> None:
    app = create_app(settings(redis_url, api_max_streams_per_key=1, **FAST))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            task_id = await submit(http, {"input": "Mail ann@x.io", "plan": ["pii"]})
            async with http.stream("GET", f"/v1/tasks/{task_id}/events") as first:
                assert first.status_code == 200
                second = await http.get(f"/v1/tasks/{task_id}/events")
                assert "SWARM_API_MAX_STREAMS_PER_KEY" in problem(second, 429, "too-many-streams")
                assert second.headers["retry-after"] == "5"
            # The first stream closed: its slot is free again.
            for _ in range(50):
                async with http.stream("GET", f"/v1/tasks/{task_id}/events") as again:
                    if again.status_code == 200:
                        break
                await asyncio.sleep(0.1)
            assert again.status_code == 200


async def test_an_input_that_cannot_fit_the_models_context_is_a_413(
    catalog: None, redis_url: str
) -> None:
    app = create_app(settings(redis_url, max_model_len=10, **FAST))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            response = await http.post("/v1/tasks", json={"input": "x" * 41, "plan": ["pii"]})
    assert "cannot fit the model's context of 10 tokens" in problem(response, 413)


# --- discovery and the dashboard ---------------------------------------------------------------


async def test_the_agent_card_lists_ready_specialists_and_follows_the_registry(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    card = (await client.get("/.well-known/agent-card.json")).json()
    assert card["name"] == "swarm" and card["protocolVersion"]
    assert card["url"].endswith("/v1") and card["capabilities"]["streaming"] is True
    skills = {s["id"]: s for s in card["skills"]}
    assert set(skills) == {"entities", "pii", "sql"}  # "broken" was rejected
    assert skills["pii"]["inputModes"] == ["text/plain", "application/json"]
    assert skills["sql"]["inputModes"] == ["application/json"]
    assert skills["sql"]["outputModes"] == ["application/json"] and skills["sql"]["tags"]
    assert "securitySchemes" not in card
    await put_specialist(redis, SpecialistRecord(name="pii", status="rejected", reason="gone"))
    card = (await client.get("/.well-known/agent-card.json")).json()
    assert {s["id"] for s in card["skills"]} == {"entities", "sql"}


async def test_the_agent_card_is_public_and_names_the_bearer_scheme_with_keys(
    catalog: None, redis_url: str
) -> None:
    with serve(create_app(settings(redis_url, api_keys="k"))) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            card = (await http.get("/.well-known/agent-card.json")).json()
            assert card["securitySchemes"]["bearer"]["scheme"] == "bearer"
            assert card["security"] == [{"bearer": []}]
            assert len(card["skills"]) == 3


async def test_the_dashboard_is_served_offline_with_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from elsewhere
    for asset in ("app.js", "style.css"):
        response = await client.get(f"/ui/{asset}")
        assert response.status_code == 200 and response.headers["x-content-type-options"]
        assert "https://" not in response.text and "http://" not in response.text
    assert (await client.get("/ui", follow_redirects=True)).url.path == "/ui/"
    problem(await client.get("/ui/nothing.js"), 404)
