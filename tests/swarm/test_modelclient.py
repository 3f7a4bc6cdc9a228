"""The model client over real HTTP: against a scripted stub for failures, real vLLM for the rest."""

from __future__ import annotations

import json
from typing import Any

import pytest

from swarm.errors import InvalidOutput, ModelUnavailable, UnknownSpecialist
from swarm.modelclient import ModelClient, parse_json_output
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


async def test_retries_after_a_5xx_and_sends_response_format_not_guided_json() -> None:
    replies = [lambda _b: (500, {"error": {"message": "boom"}}), ok('{"city": "Lyon"}')]
    with openai_stub(replies, free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url, retries=2) as client:
            result = await client.chat("m", MESSAGES, output_schema=SCHEMA)
    assert result.json == {"city": "Lyon"}
    assert result.usage.prompt_tokens == 11 and result.usage.completion_tokens == 7
    assert len(stub.requests) == 2
    sent = stub.requests[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == SCHEMA
    assert "guided_json" not in sent


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


async def test_unknown_model_is_a_user_error() -> None:
    reply = (404, {"error": {"message": "The model `nope` does not exist."}})
    with openai_stub(lambda _b: reply, free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url) as client:
            with pytest.raises(UnknownSpecialist, match="does not serve 'nope'"):
                await client.chat("nope", MESSAGES)


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
