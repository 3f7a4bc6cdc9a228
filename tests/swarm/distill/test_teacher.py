"""The teacher client against a local OpenAI-compatible server over real HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from swarm.distill.teacher import LabelCache, Prices, Teacher
from swarm.errors import ConfigurationError, InvalidOutput, ModelUnavailable
from swarm.settings import Settings

from conftest import free_port
from openaistub import completion, openai_stub

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sql": {"type": "string"}},
    "required": ["sql"],
    "additionalProperties": False,
}
PRICES = Prices(input_usd_per_mtok=2.0, output_usd_per_mtok=10.0)


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "write sql"}, {"role": "user", "content": question}]


def ok(sql: str = "SELECT 1") -> Any:
    return lambda _body: (200, completion(json.dumps({"sql": sql})))


def teacher(url: str, tmp_path: Path, **kwargs: Any) -> Teacher:
    options: dict[str, Any] = {"backoff_s": 0.01, "retries": 2, **kwargs}
    return Teacher(
        url=url, model="frontier", prices=PRICES, cache=LabelCache(tmp_path / "c.db"), **options
    )


async def test_asks_for_strict_json_schema_and_counts_tokens_and_cost(tmp_path: Path) -> None:
    with openai_stub([ok("SELECT 2")], free_port()) as stub:
        async with teacher(stub.url, tmp_path) as t:
            label = await t.label(chat("two?"), SCHEMA, max_tokens=64)
    assert label.output == {"sql": "SELECT 2"} and not label.cached
    request = stub.requests[0]
    assert request["model"] == "frontier" and request["max_tokens"] == 64
    assert request["response_format"]["json_schema"] == {
        "name": "output",
        "schema": SCHEMA,
        "strict": True,
    }
    # The stub reports 11 prompt and 7 completion tokens: 11 x $2/M + 7 x $10/M.
    assert label.cost_usd == pytest.approx(0.000092)
    assert t.stats.cost_usd == pytest.approx(0.000092)
    assert (t.stats.prompt_tokens, t.stats.completion_tokens, t.stats.calls) == (11, 7, 1)


async def test_a_rerun_is_served_from_the_disk_cache_and_costs_nothing(tmp_path: Path) -> None:
    with openai_stub([ok()], free_port()) as stub:
        async with teacher(stub.url, tmp_path) as first:
            await first.label(chat("q"), SCHEMA)
        async with teacher(stub.url, tmp_path) as second:
            again = await second.label(chat("q"), SCHEMA)
            await second.label(chat("another"), SCHEMA)
    assert len(stub.requests) == 2  # "q" once, "another" once
    assert again.cached and again.cost_usd == 0 and again.output == {"sql": "SELECT 1"}
    assert second.stats.cache_hits == 1 and second.stats.calls == 1


async def test_the_cache_keys_on_the_teacher(tmp_path: Path) -> None:
    with openai_stub([ok()], free_port()) as stub:
        async with teacher(stub.url, tmp_path) as t:
            await t.label(chat("q"), SCHEMA)
        async with Teacher(
            url=stub.url, model="other", prices=PRICES, cache=LabelCache(tmp_path / "c.db")
        ) as other:
            await other.label(chat("q"), SCHEMA)
    assert len(stub.requests) == 2


async def test_retries_after_a_500_then_succeeds(tmp_path: Path) -> None:
    replies = [lambda _b: (500, {"error": "overloaded"}), lambda _b: (503, {}), ok()]
    with openai_stub(replies, free_port()) as stub:
        async with teacher(stub.url, tmp_path) as t:
            label = await t.label(chat("q"), SCHEMA)
    assert label.output == {"sql": "SELECT 1"}
    assert len(stub.requests) == 3 and t.stats.retries == 2


async def test_gives_up_after_the_retry_budget(tmp_path: Path) -> None:
    with openai_stub([lambda _b: (500, {"error": "down"})], free_port()) as stub:
        async with teacher(stub.url, tmp_path) as t:
            with pytest.raises(ModelUnavailable, match=r"3 attempts.*HTTP 500"):
                await t.label(chat("q"), SCHEMA)
    assert len(stub.requests) == 3


async def test_an_unreachable_teacher_fails_within_the_deadline(tmp_path: Path) -> None:
    async with teacher(f"http://127.0.0.1:{free_port()}", tmp_path, retries=50) as t:
        started = time.monotonic()
        with pytest.raises(ModelUnavailable):
            await t.label(chat("q"), SCHEMA, deadline=time.monotonic() + 0.5)
    assert time.monotonic() - started < 3


async def test_a_refusal_is_a_configuration_error_not_retried(tmp_path: Path) -> None:
    with openai_stub([lambda _b: (401, {"error": "bad key"})], free_port()) as stub:
        async with teacher(stub.url, tmp_path) as t:
            with pytest.raises(ConfigurationError, match="HTTP 401"):
                await t.label(chat("q"), SCHEMA)
    assert len(stub.requests) == 1


async def test_invalid_outputs_are_dropped_and_counted_but_paid_once(tmp_path: Path) -> None:
    def reply(body: dict[str, Any]) -> tuple[int, Any]:
        question = body["messages"][-1]["content"]
        if question == "bad json":
            return 200, completion("SELECT 1")
        if question == "off schema":
            return 200, completion(json.dumps({"query": "SELECT 1"}))
        return 200, completion(json.dumps({"sql": "SELECT 1"}))

    prompts = [chat("good"), chat("bad json"), chat("off schema")]
    with openai_stub(reply, free_port()) as stub:
        async with teacher(stub.url, tmp_path) as t:
            labels = await t.label_all(prompts, SCHEMA)
            assert t.stats.invalid == 2 and t.stats.calls == 3
            with pytest.raises(InvalidOutput):
                await t.label(chat("bad json"), SCHEMA)  # from the cache: not paid again
    assert [label is not None for label in labels] == [True, False, False]
    assert len(stub.requests) == 3


def test_from_settings_says_what_is_missing() -> None:
    with pytest.raises(ConfigurationError, match="SWARM_TEACHER_URL"):
        Teacher.from_settings(Settings())
    with pytest.raises(ConfigurationError, match="SWARM_TEACHER_MODEL"):
        Teacher.from_settings(Settings(teacher_url="http://teacher"))
