"""``swarm submit``'s client against the real API over real HTTP and real Redis.

The orchestrator's part (state and events) is written through TaskStore. A small TCP proxy
between client and API breaks connections on purpose, to show that a dropped event stream is
resumed with Last-Event-ID without losing or repeating a line, and that a POST whose answer was
lost is retried without creating a second task.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from swarm import names, submitter
from swarm.catalog import SpecialistRecord, put_specialist
from swarm.errors import InfrastructureError, UserError
from swarm.messages import Envelope, TaskEvent
from swarm.settings import Settings
from swarm.submitter import EventParser, ServerEvent, describe, follow_events, submit_and_follow
from swarm.tasks import TaskRecord, TaskStore

from adapterfactory import manifest_of
from apiserver import api_server
from conftest import free_port
from redisfixture import TEST_REDIS_URL

PII_SCHEMA = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}

# Decides, before each chunk of the API's answer is passed on, whether to cut the connection:
# (index of this connection, its request head, answer bytes passed on so far) -> cut?
Policy = Callable[[int, bytes, bytes], bool]


class Proxy:
    """A TCP proxy in front of the API that cuts connections when ``policy`` says so."""

    def __init__(self, upstream_port: int, policy: Policy) -> None:
        self.upstream_port = upstream_port
        self.policy = policy
        self.heads: list[bytes] = []
        self.passed: dict[int, bytes] = {}
        """What the API's answer on each connection carried to the client so far."""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                break
            head += chunk
        with self._lock:
            index = len(self.heads)
            self.heads.append(head)
        upstream.sendall(head)
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        passed = b""
        try:
            while chunk := upstream.recv(65536):
                if self.policy(index, head, passed + chunk):
                    return
                client.sendall(chunk)
                passed += chunk
                self.passed[index] = passed
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with _quiet():
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with _quiet():
            while chunk := source.recv(65536):
                target.sendall(chunk)

    def close(self) -> None:
        self.listener.close()


def _quiet() -> contextlib.suppress:
    return contextlib.suppress(OSError)


@pytest.fixture
async def api(redis: Redis) -> AsyncIterator[tuple[str, int]]:
    await put_specialist(
        redis,
        SpecialistRecord(
            name="pii", status="ready", manifest=manifest_of("pii", input_schema=PII_SCHEMA)
        ),
    )
    port = free_port()
    with api_server(Settings(redis_url=TEST_REDIS_URL, vllm_urls=[]), port) as url:
        yield url, port


async def wait_for_task(redis: Redis) -> str:
    for _ in range(200):
        entries = await redis.xrange(names.TASKS_STREAM)
        if entries:
            return Envelope.decode(entries[0][1][b"m"]).task_id
        await asyncio.sleep(0.02)
    raise AssertionError("no task was submitted")


async def play(store: TaskStore, task_id: str, *events: TaskEvent) -> None:
    """Log events as an orchestrator would (state events also set the task's state)."""

    def change(task: TaskRecord) -> list[TaskEvent]:
        for event in events:
            if event.kind == "state" and event.state:
                task.state = event.state
        return list(events)

    await store.update(task_id, change)


WORKING = TaskEvent(
    kind="state",
    state="working",
    detail={"plan": [{"id": "s1", "specialist": "pii"}], "plan_source": "explicit"},
)
STARTED = TaskEvent(kind="step.started", step_id="s1", detail={"specialist": "pii"})
DONE = TaskEvent(
    kind="step.completed",
    step_id="s1",
    detail={"specialist": "pii", "latency_ms": 12.4, "output": {"redacted_text": "[NAME]"}},
)
COMPLETED = TaskEvent(kind="state", state="completed", detail={"result": {"redacted_text": "x"}})


def events_request(head: bytes) -> bool:
    return head.startswith(b"GET ") and b"/events " in head.split(b"\r\n")[0]


async def test_progress_is_printed_live_and_resumed_after_a_dropped_stream(
    api: tuple[str, int], redis: Redis
) -> None:
    _url, port = api
    cut: list[int] = []

    def cut_first_stream_as_the_second_event_comes(index: int, head: bytes, passed: bytes) -> bool:
        if not events_request(head) or (cut and cut[0] != index):
            return False
        if passed.count(b"event: ") >= 2:
            cut[:] = [index]
            return True
        return False

    proxy = Proxy(port, cut_first_stream_as_the_second_event_comes)
    lines: list[str] = []
    body = {"input": "Ann Lee called.", "plan": ["pii"]}
    follower = asyncio.create_task(
        asyncio.to_thread(submit_and_follow, proxy.url, body, echo=lines.append)
    )
    store = TaskStore(redis)
    task_id = await wait_for_task(redis)
    for _ in range(250):  # until the client has the first event ('submitted')
        if any(b"event: " in passed for passed in proxy.passed.values()):
            break
        await asyncio.sleep(0.02)
    await play(store, task_id, WORKING)
    for _ in range(250):  # until the client has reconnected
        if sum(events_request(h) for h in proxy.heads) >= 2:
            break
        await asyncio.sleep(0.02)
    await play(store, task_id, STARTED, DONE)
    await play(store, task_id, COMPLETED)
    final = await asyncio.wait_for(follower, 20)
    proxy.close()

    assert final == "completed"
    ids = [event_id for event_id, _e in await store.events(task_id)]
    resumed = [h for h in proxy.heads if events_request(h)][1]
    # 'working' was lost in flight with the first stream, so it is replayed after 'submitted'.
    assert f"last-event-id: {ids[0]}".encode() in resumed.lower()
    interrupted = [line for line in lines if line.startswith("(event stream interrupted")]
    assert len(interrupted) == 1 and ids[0] in interrupted[0]
    assert [line for line in lines if not line.startswith("(")] == [
        f"task {task_id} submitted",
        "task submitted",
        "task working (plan: pii; from explicit)",
        "step s1 (pii) started",
        'step s1 (pii) done in 12 ms: {"redacted_text": "[NAME]"}',
        'task completed\nresult: {"redacted_text": "x"}',
    ]


async def test_a_post_whose_answer_was_lost_is_retried_without_a_second_task(
    api: tuple[str, int], redis: Redis
) -> None:
    _url, port = api
    proxy = Proxy(port, lambda index, head, _passed: index == 0 and head.startswith(b"POST"))
    task_id = await asyncio.to_thread(
        submitter.submit_task, proxy.url, {"input": "x", "plan": ["pii"]}
    )
    proxy.close()
    posts = [h for h in proxy.heads if h.startswith(b"POST")]
    assert len(posts) == 2 and await redis.xlen(names.TASKS_STREAM) == 1
    keys = {line for h in posts for line in h.lower().split(b"\r\n") if b"idempotency-key" in line}
    assert len(keys) == 1  # both tries carried the same key
    assert (await TaskStore(redis).get(task_id)).state == "submitted"


async def test_refusals_and_outages_say_what_to_do(
    api: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _port = api
    with pytest.raises(UserError, match=r"refused the task \(422\).*no specialist named 'sqll'"):
        await asyncio.to_thread(submitter.submit_task, url, {"input": "x", "plan": ["sqll"]})
    with pytest.raises(UserError, match=r"cannot follow task nope \(404\): no task 'nope'"):
        await asyncio.to_thread(lambda: list(follow_events(url, "nope")))
    monkeypatch.setattr(submitter, "POST_RETRIES", 1)
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(InfrastructureError, match="cannot submit to the swarm API"):
        await asyncio.to_thread(submitter.submit_task, dead, {"input": "x", "plan": ["pii"]})
    with pytest.raises(InfrastructureError, match="lost the event stream of task t 3 times"):
        await asyncio.to_thread(lambda: list(follow_events(dead, "t", max_failures=2)))


async def test_a_missing_key_is_explained(redis: Redis) -> None:
    settings = Settings(redis_url=TEST_REDIS_URL, vllm_urls=[], api_keys="k")  # type: ignore[arg-type]
    with (
        api_server(settings, free_port()) as url,
        pytest.raises(UserError, match=r"\(401\).*set SWARM_API_KEY"),
    ):
        await asyncio.to_thread(submitter.submit_task, url, {"input": "x", "goal": "g"})


def parse(text: str) -> list[ServerEvent]:
    parser = EventParser()
    return [e for line in text.split("\n") if (e := parser.feed(line)) is not None]


def test_the_event_parser_follows_the_sse_rules() -> None:
    events = parse(
        ": keepalive\n\n"
        'id: 1-0\nevent: state\ndata: {"state":\n'
        'data: "working"}\n\n'
        "id:2-0\nevent:step.started\ndata:{}\n\n"
        "event: state\ndata: not json\n\n"
        "data: plain\n\n"
    )
    assert events == [
        ServerEvent("1-0", "state", {"state": "working"}),
        ServerEvent("2-0", "step.started", {}),
        ServerEvent(None, "state", "not json"),
        ServerEvent(None, "message", "plain"),
    ]
    assert not events[0].final
    assert ServerEvent(None, "state", {"state": "canceled"}).final


@pytest.mark.parametrize(
    ("event", "data", "line"),
    [
        (
            "state",
            {"state": "failed", "reason": "step 's1' failed"},
            "task failed: step 's1' failed",
        ),
        (
            "step.failed",
            {"step_id": "s2", "detail": {"specialist": "sql"}, "reason": "bad SQL"},
            "step s2 (sql) failed: bad SQL",
        ),
        ("step.completed", {"step_id": "s1", "detail": {"output": "x" * 400}}, "..."),
    ],
)
def test_each_event_reads_as_one_progress_line(event: str, data: dict[str, Any], line: str) -> None:
    assert line in describe(ServerEvent("1-0", event, data))
    assert len(describe(ServerEvent("1-0", event, data))) < 400


def short_stream_api(redis_url: str, port: int) -> contextlib.AbstractContextManager[str]:
    """The real API, whose event streams end after 0.3 s (as a step quiet for longer than
    the server's limit sees them end)."""
    settings = Settings(redis_url=redis_url, vllm_urls=[], api_sse_keepalive_s=0.1,
                        api_sse_max_s=0.3)  # fmt: skip
    return api_server(settings, port)


async def test_a_step_quieter_than_every_reconnect_is_followed_to_its_end(redis: Redis) -> None:
    await put_specialist(
        redis,
        SpecialistRecord(
            name="pii", status="ready", manifest=manifest_of("pii", input_schema=PII_SCHEMA)
        ),
    )
    with short_stream_api(TEST_REDIS_URL, free_port()) as url:
        task_id = await asyncio.to_thread(
            submitter.submit_task, url, {"input": "Ann Lee called.", "plan": ["pii"]}
        )
        interruptions: list[str] = []
        events: list[ServerEvent] = []

        def follow() -> None:
            for event in follow_events(
                url,
                task_id,
                max_failures=1,
                on_reconnect=lambda _last, why: interruptions.append(why),
            ):
                events.append(event)

        follower = asyncio.create_task(asyncio.to_thread(follow))
        store = TaskStore(redis)
        await play(store, task_id, WORKING, STARTED)
        # The step stays quiet through many streams the server ends (more than max_failures).
        for _ in range(500):
            if len(interruptions) >= 4:
                break
            await asyncio.sleep(0.02)
        assert not follower.done(), follower.exception()
        await play(store, task_id, DONE, COMPLETED)
        await asyncio.wait_for(follower, 20)

    assert [e.event for e in events] == [
        "state",
        "state",
        "step.started",
        "step.completed",
        "state",
    ]
    assert events[-1].final
    assert "the server ended the stream (time limit reached" in interruptions[0]


async def test_the_same_interruption_is_said_once_until_an_event_comes(redis: Redis) -> None:
    await put_specialist(
        redis,
        SpecialistRecord(
            name="pii", status="ready", manifest=manifest_of("pii", input_schema=PII_SCHEMA)
        ),
    )
    with short_stream_api(TEST_REDIS_URL, free_port()) as url:
        lines: list[str] = []
        follower = asyncio.create_task(
            asyncio.to_thread(
                submit_and_follow, url, {"input": "Ann Lee.", "plan": ["pii"]}, echo=lines.append
            )
        )
        task_id = await wait_for_task(redis)
        store = TaskStore(redis)
        await asyncio.sleep(3)  # about three streams end while nothing happens
        await play(store, task_id, WORKING, STARTED, DONE, COMPLETED)
        assert await asyncio.wait_for(follower, 20) == "completed"
    said = [line for line in lines if line.startswith("(event stream interrupted")]
    assert len(said) == 1, lines
