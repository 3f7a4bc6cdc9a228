"""The cascade over real Redis, with a student and a teacher stub reached over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from specialists.builtin import BUILTINS
from specialists.cascade import read_escalations
from swarm import names
from swarm.catalog import SpecialistRecord, put_specialist
from swarm.manifest import Escalation, Manifest
from swarm.serving.attempts import confidence
from swarm.settings import Settings

from conftest import free_port
from openaistub import completion, openai_stub
from stepdriver import run_step

SQL_INPUT = {
    "question": "How many orders are there?",
    "schema": "CREATE TABLE orders (id INTEGER, total REAL);",
}
GOOD = '{"sql": "SELECT COUNT(*) FROM orders"}'
BAD = '{"sql": "DELETE FROM orders"}'
Reply = Callable[[dict[str, Any]], tuple[int, Any]]


def answer(content: str, *, logprob: float | None = None) -> Reply:
    body = completion(content)
    if logprob is not None:
        body["choices"][0]["logprobs"] = {
            "content": [{"token": "x", "logprob": logprob, "top_logprobs": []}] * 5
        }
    return lambda _body: (200, body)


async def register_sql(redis: Redis, **escalation: Any) -> None:
    manifest = Manifest.model_validate(
        {**BUILTINS["sql"].manifest.document(), "escalation": escalation}
    )
    await put_specialist(
        redis,
        SpecialistRecord(
            name="sql",
            version="0.1.0",
            status="ready",
            description="sql",
            manifest=manifest,
        ),
    )


def settings_for(student: str, teacher: str | None = None, **changes: Any) -> Settings:
    return Settings(
        heartbeat_timeout_s=2,
        vllm_urls=[student],
        teacher_url=teacher,
        teacher_model="frontier" if teacher else None,
        teacher_input_usd_per_mtok=2.0,
        teacher_output_usd_per_mtok=10.0,
        teacher_retries=1,
        local_gpu_usd_per_hour=3.6,
        local_tokens_per_s=1000.0,  # $1e-6 a token: easy to check by hand
        **changes,
    )


async def test_invalid_output_escalates_to_the_teacher_with_the_same_schema(
    redis: Redis, tmp_path: Any
) -> None:
    await register_sql(redis, on_invalid_output=True)
    with (
        openai_stub([answer(BAD)], free_port()) as student,
        openai_stub([answer(GOOD)], free_port()) as teacher,
    ):
        settings = settings_for(student.url, teacher.url, teacher_cache=tmp_path / "t.db")
        result = await run_step(redis, settings, "sql", SQL_INPUT)
    assert result.valid and result.escalated and result.output == json.loads(GOOD)
    assert result.escalation_reason is not None
    assert result.escalation_reason.startswith("invalid output after 3 attempt(s)")
    assert teacher.requests[0]["response_format"]["json_schema"]["schema"] == (
        BUILTINS["sql"].manifest.output_schema
    )
    # By hand: the student ran 3 times at 11 + 7 tokens ($1e-6 each) = $54e-6; the teacher
    # charged 11 x $2/M + 7 x $10/M = $92e-6. All-teacher: the teacher's own call, $92e-6.
    assert result.cost_usd == pytest.approx(54e-6 + 92e-6)
    assert result.all_teacher_cost_usd == pytest.approx(92e-6)
    kept = await read_escalations(redis, "sql")
    assert [(e.input, e.output) for e in kept] == [(SQL_INPUT, json.loads(GOOD))]


async def test_low_confidence_escalates_and_high_confidence_does_not(
    redis: Redis, tmp_path: Any
) -> None:
    await register_sql(redis, min_confidence=0.5)
    teacher_answer = '{"sql": "SELECT COUNT(id) FROM orders"}'
    with (
        openai_stub([answer(GOOD, logprob=-2.0)], free_port()) as student,
        openai_stub([answer(teacher_answer)], free_port()) as teacher,
    ):
        settings = settings_for(student.url, teacher.url, teacher_cache=tmp_path / "t.db")
        unsure = await run_step(redis, settings, "sql", SQL_INPUT, task="t1")
        assert student.requests[0]["logprobs"] is True
        student.replies = [answer(GOOD, logprob=-0.01)]
        await redis.delete(names.RESULTS_STREAM)
        sure = await run_step(redis, settings, "sql", SQL_INPUT, task="t2")
    assert unsure.escalated and unsure.output == json.loads(teacher_answer)
    assert unsure.escalation_reason == "confidence 0.135 below min_confidence=0.5"
    assert not sure.escalated and sure.output == json.loads(GOOD)
    assert len(teacher.requests) == 1


async def test_long_input_goes_straight_to_the_teacher(redis: Redis, tmp_path: Any) -> None:
    await register_sql(redis, max_input_chars=20)
    with (
        openai_stub([answer(BAD)], free_port()) as student,
        openai_stub([answer(GOOD)], free_port()) as teacher,
    ):
        settings = settings_for(student.url, teacher.url, teacher_cache=tmp_path / "t.db")
        result = await run_step(redis, settings, "sql", SQL_INPUT)
    assert result.escalated and result.valid and student.requests == []
    assert result.escalation_reason is not None and "over max_input_chars=20" in (
        result.escalation_reason
    )


async def test_without_a_teacher_the_step_fails_with_the_reason(redis: Redis) -> None:
    await register_sql(redis, on_invalid_output=True)
    with openai_stub([answer(BAD)], free_port()) as student:
        result = await run_step(redis, settings_for(student.url), "sql", SQL_INPUT)
    assert not result.valid and not result.escalated
    assert result.error == (
        "invalid output after 3 attempt(s): expected a SELECT query, got DELETE; no teacher "
        "configured (SWARM_TEACHER_URL), so the step was not escalated"
    )


async def test_a_teacher_outage_fails_the_step_in_bounded_time(redis: Redis, tmp_path: Any) -> None:
    await register_sql(redis, on_invalid_output=True)
    with (
        openai_stub([answer(BAD)], free_port()) as student,
        openai_stub([lambda _b: (503, {"error": "overloaded"})], free_port()) as teacher,
    ):
        settings = settings_for(student.url, teacher.url, teacher_cache=tmp_path / "t.db")
        started = time.monotonic()
        result = await run_step(redis, settings, "sql", SQL_INPUT)
    assert not result.valid and not result.escalated
    assert result.error is not None and "escalation failed: teacher at" in result.error
    assert "HTTP 503" in result.error and len(teacher.requests) == 2  # 1 retry
    assert time.monotonic() - started < 30
    assert await read_escalations(redis, "sql") == []


def test_confidence_and_policy_rules() -> None:
    assert confidence(None) is None and confidence([]) is None
    assert confidence([0.0, 0.0]) == 1.0
    assert confidence([-1.0, -3.0]) == pytest.approx(0.1353, abs=1e-4)
    policy = Escalation(min_confidence=0.8, max_input_chars=15)
    assert policy.before({"text": "short"}) is None
    assert policy.before({"text": "sixteen chars!!!"}) == (
        "input is 16 characters, over max_input_chars=15"
    )
    assert policy.after_valid(0.9) is None and policy.after_valid(None) is None
    assert policy.after_valid(0.5) == "confidence 0.500 below min_confidence=0.8"
    assert Escalation().on_invalid_output is True


async def test_past_the_daily_teacher_budget_steps_fail_instead_of_escalating(
    redis: Redis, tmp_path: Any
) -> None:
    await register_sql(redis, on_invalid_output=True)
    with (
        openai_stub([answer(BAD)], free_port()) as student,
        openai_stub([answer(GOOD)], free_port()) as teacher,
    ):
        # The first escalation costs $92e-6, past a $50e-6 day: the second is not sent.
        settings = settings_for(
            student.url, teacher.url, teacher_cache=tmp_path / "t.db", teacher_daily_usd=50e-6
        )
        first = await run_step(redis, settings, "sql", SQL_INPUT, task="t1")
        await redis.delete(names.RESULTS_STREAM)
        second = await run_step(redis, settings, "sql", SQL_INPUT, task="t2")
    assert first.valid and first.escalated
    assert not second.valid and not second.escalated and len(teacher.requests) == 1
    assert second.error is not None
    assert "the teacher's daily budget of $5e-05 is spent (SWARM_TEACHER_DAILY_USD)" in (
        second.error
    )
