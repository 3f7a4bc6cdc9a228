"""The model client over real HTTP: against a scripted stub for failures, real vLLM for the rest."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from swarm.errors import (
    ConfigurationError,
    InvalidAdapter,
    InvalidOutput,
    ModelUnavailable,
    UnknownSpecialist,
    UserError,
)
from swarm.serving.modelclient import (
    ModelClient,
    parse_json_output,
    plain_json_format,
    requested_schema,
)
from swarm.settings import Settings

from conftest import VllmServer, free_port
from openaistub import completion, openai_stub

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "user", "content": "Name a city in France."}]


def ok(content: str) -> Any:
    return lambda _body: (200, completion(content))


async def test_retries_after_a_5xx_and_sends_the_schema_with_whitespace_capped() -> None:
    replies = [lambda _b: (500, {"error": {"message": "boom"}}), ok('{"city": "Lyon"}')]
    with openai_stub(replies, free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url, retries=2) as client:
            result = await client.chat("m", MESSAGES, output_schema=SCHEMA)
    assert result.json == {"city": "Lyon"}
    assert result.usage.prompt_tokens == 11 and result.usage.completion_tokens == 7
    assert len(stub.requests) == 2
    sent = stub.requests[-1]
    assert sent["response_format"] == {
        "type": "structural_tag",
        "format": {"type": "json_schema", "json_schema": SCHEMA, "max_whitespace_cnt": 1},
    }
    assert requested_schema(sent) == SCHEMA
    assert "guided_json" not in sent


def refuses_structural_tags(body: dict[str, Any]) -> tuple[int, Any]:
    """As vLLM answers a structural tag it cannot compile; the plain schema it answers."""
    if body["response_format"]["type"] == "structural_tag":
        message = "Invalid response_format structural_tag specification."
        return 400, {"error": {"message": message, "type": "BadRequestError", "code": 400}}
    return 200, completion('{"city": "Lyon"}')


async def test_a_schema_refused_in_a_structural_tag_is_sent_plain_from_then_on() -> None:
    other = {**SCHEMA, "description": "another schema"}
    with openai_stub(refuses_structural_tags, free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url, retries=0) as client:
            for schema in (SCHEMA, SCHEMA, other):
                result = await client.chat("m", MESSAGES, output_schema=schema)
                assert result.json == {"city": "Lyon"}
    sent = [(r["response_format"]["type"], requested_schema(r)) for r in stub.requests]
    assert sent == [
        ("structural_tag", SCHEMA),
        ("json_schema", SCHEMA),
        ("json_schema", SCHEMA),  # remembered: no second refusal
        ("structural_tag", other),
        ("json_schema", other),
    ]
    assert stub.requests[1]["response_format"]["json_schema"]["strict"] is True


async def test_a_request_refused_either_way_is_a_user_error_and_not_remembered() -> None:
    too_long = "This model's maximum context length is 2048 tokens."
    reply = (400, {"error": {"message": too_long, "type": "BadRequestError", "code": 400}})
    with openai_stub(lambda _b: reply, free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url, retries=0) as client:
            for _ in range(2):
                with pytest.raises(UserError, match="maximum context length"):
                    await client.chat("m", MESSAGES, output_schema=SCHEMA)
    kinds = [r["response_format"]["type"] for r in stub.requests]
    assert kinds == ["structural_tag", "json_schema"] * 2


async def test_persistent_5xx_becomes_model_unavailable() -> None:
    with openai_stub(lambda _b: (503, {"error": {"message": "overloaded"}}), free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url, retries=1) as client:
            with pytest.raises(ModelUnavailable, match=r"503: overloaded \(after 2 attempts\)"):
                await client.chat("m", MESSAGES)
    assert len(stub.requests) == 2


async def test_connection_refused_becomes_model_unavailable() -> None:
    async with ModelClient(Settings(), base_url=f"http://127.0.0.1:{free_port()}", retries=1) as c:
        with pytest.raises(ModelUnavailable, match="cannot connect to"):
            await c.chat("m", MESSAGES)


async def test_retries_stay_inside_the_callers_budget() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with ModelClient(Settings(), base_url=url, retries=10) as client:
        started = time.monotonic()
        with pytest.raises(ModelUnavailable, match="cannot connect to"):
            await client.chat("m", MESSAGES, timeout_s=0.5)
    assert time.monotonic() - started < 1.5  # ten retries would back off for ~20 s


async def test_unknown_model_is_a_user_error() -> None:
    reply = (404, {"error": {"message": "The model `nope` does not exist."}})
    with openai_stub(lambda _b: reply, free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url) as client:
            for schema in (None, SCHEMA):  # with a schema, not blamed on the structural tag
                with pytest.raises(UnknownSpecialist, match="does not serve 'nope'"):
                    await client.chat("nope", MESSAGES, output_schema=schema)
    assert len(stub.requests) == 2


@pytest.mark.parametrize(
    ("content", "finish", "message"),
    [
        ('{"city": "Ly', "length", "cut off at max_tokens"),
        ('{"city": "Ly\non"}', "stop", "not valid JSON"),  # a raw control character
        ('{"town": "Lyon"}', "stop", "does not match the schema"),
    ],
)
async def test_outputs_are_validated_in_python(content: str, finish: str, message: str) -> None:
    reply = (200, completion(content, finish_reason=finish))
    with openai_stub(lambda _b: reply, free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url) as client:
            with pytest.raises(InvalidOutput, match=message) as info:
                await client.chat("m", MESSAGES, output_schema=SCHEMA)
    assert info.value.raw == content


def test_parse_json_output_accepts_escaped_control_characters() -> None:
    assert parse_json_output(json.dumps({"city": "Ly\non"}), SCHEMA) == {"city": "Ly\non"}


class Scripted:
    """Any path, any method: each request pops the next scripted reply for its path."""

    def __init__(self, replies: dict[str, list[tuple[int, Any]]], *, delay_s: float = 0.0) -> None:
        self.replies = replies
        self.delay_s = delay_s
        self.seen: list[str] = []
        self.url = ""


@contextmanager
def scripted_server(
    replies: dict[str, list[tuple[int, Any]]], *, delay_s: float = 0.0
) -> Iterator[Scripted]:
    """A real HTTP server on a free port that answers as scripted (for failure modes)."""
    scripted = Scripted(replies, delay_s=delay_s)
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def answer(path: str) -> JSONResponse:
        scripted.seen.append("/" + path)
        await asyncio.sleep(scripted.delay_s)
        queue = scripted.replies["/" + path]
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        return JSONResponse(body, status_code=status)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    scripted.url = f"http://127.0.0.1:{port}"
    try:
        yield scripted
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def vllm_error(message: str, status: int) -> tuple[int, Any]:
    return status, {"error": {"message": message, "type": "InternalServerError", "code": status}}


async def test_an_adapter_vllm_cannot_load_is_invalid_and_not_retried() -> None:
    replies = {"/v1/load_lora_adapter": [vllm_error("Loading lora failed: bad shape", 500)]}
    with scripted_server(replies) as server:
        async with ModelClient(Settings(), base_url=server.url, retries=3) as client:
            with pytest.raises(InvalidAdapter, match="vLLM could not load it: Loading lora"):
                await client.load_adapter("notes-v1-abc", "/nowhere")
    assert server.seen == ["/v1/load_lora_adapter"]


async def test_adapter_load_retries_a_gateway_error_then_succeeds() -> None:
    replies = {"/v1/load_lora_adapter": [(503, {"error": {"message": "busy"}}), (200, "Success")]}
    with scripted_server(replies) as server:
        async with ModelClient(Settings(), base_url=server.url, retries=1) as client:
            await client.load_adapter("notes-v1-abc", "/somewhere")
    assert server.seen == ["/v1/load_lora_adapter"] * 2


async def test_unloading_an_unknown_adapter_is_not_an_error() -> None:
    replies = {"/v1/unload_lora_adapter": [vllm_error("cannot be found", 404)]}
    with scripted_server(replies) as server:
        async with ModelClient(Settings(), base_url=server.url) as client:
            assert await client.unload_adapter("gone-v1-abc") is False


async def test_rate_limit_is_retried_and_bad_credentials_are_a_configuration_error() -> None:
    replies: dict[str, list[tuple[int, Any]]] = {
        "/v1/models": [(429, {"error": {"message": "slow down"}}), (200, {"data": [{"id": "b"}]})],
        "/v1/chat/completions": [(401, {"error": {"message": "bad key"}})],
    }
    with scripted_server(replies) as server:
        async with ModelClient(Settings(), base_url=server.url, retries=1) as client:
            assert await client.list_models() == ["b"]
            with pytest.raises(ConfigurationError, match="SWARM_VLLM_API_KEY"):
                await client.chat("b", MESSAGES)


async def test_a_read_timeout_is_not_retried() -> None:
    replies = {"/v1/chat/completions": [(200, completion("{}"))]}
    with scripted_server(replies, delay_s=1.0) as server:
        async with ModelClient(Settings(), base_url=server.url, retries=3, timeout_s=0.2) as c:
            with pytest.raises(ModelUnavailable, match=r"timed out after 0\.2s"):
                await c.chat("m", MESSAGES)
    assert server.seen == ["/v1/chat/completions"]


async def test_other_client_errors_keep_the_servers_message() -> None:
    too_long = "This model's maximum context length is 2048 tokens."
    replies = {"/v1/chat/completions": [vllm_error(too_long, 400)]}
    with scripted_server(replies) as server:
        async with ModelClient(Settings(), base_url=server.url) as client:
            with pytest.raises(UserError, match="maximum context length"):
                await client.chat("m", MESSAGES)


async def test_logprobs_and_top_logprobs_are_returned() -> None:
    body = completion('{"city": "Nice"}')
    body["choices"][0]["logprobs"] = {
        "content": [
            {"token": "{", "logprob": -0.1, "top_logprobs": [{"token": "{", "logprob": -0.1}]},
            {"token": "x", "logprob": -2.0, "top_logprobs": [{"token": "y", "logprob": -0.5}]},
        ]
    }
    with scripted_server({"/v1/chat/completions": [(200, body)]}) as server:
        async with ModelClient(Settings(), base_url=server.url) as client:
            result = await client.chat("m", MESSAGES, output_schema=SCHEMA, top_logprobs=1)
    assert result.logprobs == [-0.1, -2.0]
    assert result.top_logprobs == [{"{": -0.1}, {"y": -0.5}]


async def test_health_is_false_when_nothing_listens() -> None:
    async with ModelClient(Settings(), base_url=f"http://127.0.0.1:{free_port()}") as client:
        assert await client.health() is False


@pytest.mark.slow
async def test_schema_constrained_call_on_real_vllm(vllm_server: VllmServer) -> None:
    async with ModelClient(vllm_server.settings) as client:
        assert vllm_server.served_base in await client.list_models()
        result = await client.chat(
            vllm_server.served_base,
            MESSAGES,
            output_schema=SCHEMA,
            max_tokens=40,
            logprobs=True,
        )
    assert isinstance(result.json["city"], str)
    assert result.logprobs and all(lp <= 0 for lp in result.logprobs)
    assert result.usage.completion_tokens > 0


REDACT_SCHEMA = {
    "type": "object",
    "properties": {
        "redacted_text": {"type": "string", "maxLength": 200},
        "spans": {
            "type": "array",
            "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "maxLength": 60},
                    "type": {"type": "string", "enum": ["PERSON", "EMAIL"]},
                },
                "required": ["text", "type"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["redacted_text", "spans"],
    "additionalProperties": False,
}
REDACT = [
    {"role": "system", "content": "You redact names and emails. Reply as JSON."},
    {"role": "user", "content": '{"text": "Contact Maria Lopez at maria@example.com."}'},
    {
        "role": "assistant",
        "content": '{"redacted_text": "Contact [PERSON] at [EMAIL].", "spans": [{"text": '
        '"Maria Lopez", "type": "PERSON"}, {"text": "maria@example.com", "type": "EMAIL"}]}',
    },
    {
        "role": "user",
        "content": '{"text": "Please email John Smith at john.smith@example.com about the Acme '
        'Corp order in Paris."}',
    },
]


@pytest.mark.slow
async def test_a_pretrained_base_closes_its_json_instead_of_filling_it_with_newlines(
    vllm_server: VllmServer,
) -> None:
    """The default base is pretrained. Under a plain JSON grammar, greedy, it writes the first
    string and then newlines until max_tokens (checked first, straight to vLLM); through the
    client, with whitespace runs capped, the same request ends in valid JSON."""
    plain = {
        "model": vllm_server.served_base,
        "messages": REDACT,
        "temperature": 0.0,
        "max_tokens": 128,
        "response_format": plain_json_format(REDACT_SCHEMA),
    }
    async with httpx.AsyncClient(base_url=vllm_server.url, timeout=120) as http:
        choice = (await http.post("/v1/chat/completions", json=plain)).json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"][-40:].isspace()
    async with ModelClient(vllm_server.settings) as client:
        result = await client.chat(
            vllm_server.served_base, REDACT, output_schema=REDACT_SCHEMA, max_tokens=128
        )
    assert result.finish_reason == "stop"
    assert isinstance(result.json["redacted_text"], str)


# Several replicas: two real OpenAI-compatible servers (the stub) behind one client.

ANSWER = '{"a": 1}'


def answer(_body: dict[str, Any]) -> tuple[int, Any]:
    return 200, completion(ANSWER)


def models_sent(stub: Any) -> list[str]:
    return [r["model"] for r in stub.requests]


async def ask(client: ModelClient, model: str) -> None:
    reply = await client.chat(model, MESSAGES)
    assert reply.text == ANSWER


async def test_routing_prefers_the_replica_with_the_adapter_loaded() -> None:
    with (
        openai_stub(answer, free_port(), models=["base"]) as first,
        openai_stub(answer, free_port(), models=["base", "sql-v1"]) as second,
    ):
        settings = Settings(vllm_urls=[first.url, second.url])
        async with ModelClient(settings, retries=0) as client:
            for _ in range(4):
                await ask(client, "sql-v1")
            for _ in range(2):
                await ask(client, "base")
    assert models_sent(second) == ["sql-v1"] * 4 + ["base"]
    assert models_sent(first) == ["base"]  # both serve the base model: idle replicas take turns


async def test_routing_falls_back_to_the_least_busy_replica() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(body: dict[str, Any]) -> tuple[int, Any]:
        started.set()
        release.wait(10)  # holds the call in flight on the first replica
        return answer(body)

    with (
        openai_stub(slow, free_port(), models=["base", "busy-v1"]) as first,
        openai_stub(answer, free_port(), models=["base"]) as second,
    ):
        settings = Settings(vllm_urls=[first.url, second.url])
        async with ModelClient(settings, retries=0) as client:
            busy = asyncio.create_task(ask(client, "busy-v1"))  # only the first one has it
            assert await asyncio.to_thread(started.wait, 5)
            # No replica has "nowhere-loaded": the one with no call in flight takes them all.
            for _ in range(3):
                await ask(client, "nowhere-loaded")
            release.set()
            await busy
    assert models_sent(first) == ["busy-v1"]
    assert models_sent(second) == ["nowhere-loaded"] * 3


async def test_a_down_replica_is_skipped() -> None:
    with openai_stub(answer, free_port()) as alive:
        dead = f"http://127.0.0.1:{free_port()}"
        settings = Settings(vllm_urls=[dead, alive.url])
        async with ModelClient(settings, retries=0) as client:
            for _ in range(5):
                await ask(client, "base")  # no retries allowed: the dead one is never picked
            assert client._replicas[dead].down_until > time.monotonic()  # passed over for now
            assert await client.health() is True  # one replica answers
    assert len(alive.requests) == 5


async def test_a_replica_that_dies_mid_way_costs_no_retry() -> None:
    with openai_stub(answer, free_port()) as survivor:
        with openai_stub(answer, free_port()) as doomed:
            settings = Settings(vllm_urls=[doomed.url, survivor.url])
            client = ModelClient(settings, retries=0)
            await ask(client, "base")  # both replicas are known to be up
        # The doomed replica is gone, unnoticed: the call routed to it moves on at once.
        before = len(survivor.requests)
        for _ in range(4):
            await ask(client, "base")
        await client.aclose()
    assert len(survivor.requests) == before + 4


async def test_a_stale_picture_of_a_replica_is_corrected_by_its_404() -> None:
    with (
        openai_stub(answer, free_port(), models=["base", "pii-v1"], listed_only=True) as first,
        openai_stub(answer, free_port(), models=["base", "pii-v1"], listed_only=True) as second,
    ):
        settings = Settings(vllm_urls=[first.url, second.url])
        async with ModelClient(settings, retries=0) as client:
            await ask(client, "base")
            first.models.remove("pii-v1")  # say it restarted, and the client has not looked yet
            for _ in range(3):
                await ask(client, "pii-v1")
    assert models_sent(second).count("pii-v1") == 3
    assert models_sent(first).count("pii-v1") <= 1  # at most one 404, then it is avoided


async def test_adapters_load_into_every_replica_and_a_restarted_one_is_filled_in() -> None:
    with (
        openai_stub(answer, free_port(), models=["base"]) as first,
        openai_stub(answer, free_port(), models=["base"]) as second,
    ):
        settings = Settings(vllm_urls=[first.url, second.url])
        async with ModelClient(settings) as client:
            await client.load_adapter("pii-v1", "/adapters/pii")
            assert first.models == second.models == ["base", "pii-v1"]
            assert await client.list_models() == ["base", "pii-v1"]
            second.models.remove("pii-v1")  # a restart forgets runtime-loaded adapters
            # Only names every replica serves count as loaded, so the registry loads it again;
            # the replica that still has it answers "already loaded", which is fine.
            assert await client.list_models() == ["base"]
            await client.load_adapter("pii-v1", "/adapters/pii")
            assert second.models == ["base", "pii-v1"]
            assert await client.unload_adapter("pii-v1") is True
            assert first.models == second.models == ["base"]
            assert await client.unload_adapter("pii-v1") is False


async def test_loading_with_a_replica_down_loads_the_others_and_fails_only_if_none_answer() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with openai_stub(answer, free_port(), models=["base"]) as alive:
        async with ModelClient(Settings(vllm_urls=[dead, alive.url]), retries=0) as client:
            await client.load_adapter("sql-v1", "/adapters/sql")
            assert await client.list_models() == ["base", "sql-v1"]
            assert await client.unload_adapter("sql-v1") is True
    assert alive.models == ["base"]
    other = f"http://127.0.0.1:{free_port()}"
    async with ModelClient(Settings(vllm_urls=[dead, other]), retries=0) as client:
        with pytest.raises(ModelUnavailable, match="cannot connect"):
            await client.load_adapter("sql-v1", "/adapters/sql")
        assert await client.health() is False
