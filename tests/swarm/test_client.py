"""swarm.Client and swarm.AsyncClient against the real API on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

import swarm
from swarm.errors import DeadlineExceeded, InfrastructureError, UserError
from swarm.settings import Settings

from apiserver import api_server, put_builtins
from conftest import free_port

pytestmark = pytest.mark.redis_backends

FAST = {"api_sse_keepalive_s": 0.2, "api_idempotency_wait_s": 1.0}


def settings(redis_url: str, **changes: object) -> Settings:
    return Settings(**{"redis_url": redis_url, "vllm_urls": [], **FAST, **changes})


@pytest.fixture
async def catalog(redis: Redis) -> None:
    await put_builtins(redis)


@pytest.fixture
def api(catalog: None, redis_url: str) -> Iterator[str]:
    with api_server(settings(redis_url), free_port()) as url:
        yield url


def test_submit_read_list_cancel_and_wait(api: str) -> None:
    with swarm.Client(api) as client:
        task = client.submit("Call Ann at +1 555 0100", plan=["pii"])
        assert task.state == "submitted" and task.steps[0].specialist == "pii"
        assert client.get(task.id) == task
        other = client.submit({"question": "How many?", "schema": "CREATE TABLE t (id INT);"},
                              plan=["sql"])  # fmt: skip
        assert [t.id for t in client.list()] == [other.id, task.id]
        assert [t.id for t in client.list(specialist="pii")] == [task.id]
        assert [t.id for t in client.list(limit=1)] == [other.id]
        with pytest.raises(DeadlineExceeded, match="still submitted"):
            client.wait(task.id, timeout=0.3)
        canceled = client.cancel(task.id, reason="not needed")
        assert canceled.state == "canceled" and canceled.reason == "not needed"
        assert client.wait(task.id, timeout=5).state == "canceled"
        events = list(client.events(task.id))
        assert [e.data["state"] for e in events] == ["submitted", "canceled"]
        assert events[-1].final
        # Replay: only what came after an event.
        assert [e.data["state"] for e in client.events(task.id, after=events[0].id)] == ["canceled"]
        with pytest.raises(UserError, match="409"):
            client.cancel(task.id)
        with pytest.raises(UserError, match="404"):
            client.get("no-such-task")
        with pytest.raises(UserError, match="422"):
            client.submit("x", plan=["no-such-specialist"])
        names = {s.name: s for s in client.specialists()}
        assert names["broken"].status == "rejected" and names["broken"].reason
        assert names["sql"].input_schema and "question" in names["sql"].input_schema["required"]


def test_a_key_is_sent_and_a_missing_one_says_what_to_pass(
    catalog: None,
    redis_url: str,
) -> None:
    with api_server(settings(redis_url, api_keys="k1"), free_port()) as url:
        with swarm.Client(url, api_key="k1") as client:
            task = client.submit("x", plan=["pii"])
            assert client.get(task.id).id == task.id
        with swarm.Client(url) as anonymous, pytest.raises(UserError, match="api_key"):
            anonymous.list()


def test_an_api_that_is_not_there_is_an_infrastructure_error() -> None:
    client = swarm.Client(f"http://127.0.0.1:{free_port()}")
    with client, pytest.raises(InfrastructureError, match="cannot reach"):
        client.list()


async def test_the_async_client_does_the_same(api: str, redis: Redis) -> None:
    async with swarm.AsyncClient(api) as client:
        task = await client.submit("Call Ann", plan=["pii"])
        assert (await client.get(task.id)).state == "submitted"
        assert [t.id for t in await client.list(state="submitted")] == [task.id]
        await client.cancel(task.id)
        states = [e.data["state"] async for e in client.events(task.id)]
        assert states == ["submitted", "canceled"]
        assert (await client.wait(task.id, timeout=5)).state == "canceled"
        assert {s.name for s in await client.specialists()} >= {"pii", "sql", "entities"}


def test_swarm_tasks_lists_them_in_a_table(api: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    with swarm.Client(api) as client:
        first = client.submit("Call Ann", plan=["pii"])
        second = client.submit("Call Bob", plan=["pii", "entities"])
        client.cancel(first.id, reason="changed my mind")
    command = [str(Path(sys.executable).with_name("swarm")), "tasks", "--url", api]
    listed = subprocess.run([*command, "--since", "1h"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "PLAN", "CREATED", "REASON"]
    assert rows[0].startswith(second.id) and "pii -> entities" in rows[0]
    assert rows[1].startswith(first.id) and "canceled" in rows[1]
    assert rows[1].endswith("changed my mind")
    canceled = subprocess.run([*command, "--state", "canceled"], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    assert [r.split()[0] for r in canceled.stdout.splitlines()[1:]] == [first.id]
    bad = subprocess.run([*command, "--since", "soon"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: --since 'soon'")
