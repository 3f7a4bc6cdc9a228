"""Answering labelled examples as the worker would, against a scripted model server over HTTP."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from swarm.distill.calibration import calibrate
from swarm.distill.dataset import Example
from swarm.distill.evaluation import answer, evaluate, exact_match
from swarm.manifest import Decoding
from swarm.serving.attempts import RETRY_TEMPERATURE
from swarm.serving.modelclient import ModelClient
from swarm.settings import Settings

from adapterfactory import manifest_of
from conftest import free_port
from openaistub import completion, openai_stub

MANIFEST = manifest_of(
    "words",
    system_prompt="Say a word.",
    output_schema={
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
    },
    decoding={"temperature": 0.0, "max_tokens": 8},
)
EXAMPLE = Example(input={"text": "hi"}, output={"word": "good"})
Reply = Callable[[dict[str, Any]], tuple[int, Any]]


def reply(word: str, logprob: float = -0.1) -> Reply:
    body = completion(f'{{"word": "{word}"}}')
    body["choices"][0]["logprobs"] = {
        "content": [{"token": "x", "logprob": logprob, "top_logprobs": []}] * 4
    }
    return lambda _body: (200, body)


def no_bad(_input: dict[str, Any], output: dict[str, Any]) -> str | None:
    return "bad word" if output["word"] == "bad" else None


async def test_an_answer_failing_the_check_is_asked_again_sampling() -> None:
    with openai_stub([reply("bad"), reply("good", -0.5)], free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url) as client:
            [got] = await answer(
                client, "m", MANIFEST, [EXAMPLE], logprobs=True, check=no_bad, retries=2
            )
    assert got.output == {"word": "good"}
    assert got.confidence is not None and math.isclose(got.confidence, math.exp(-0.5))
    # Both attempts are paid for: the stub bills 11 prompt and 7 completion tokens each.
    assert (got.prompt_tokens, got.completion_tokens) == (22, 14)
    assert [r["temperature"] for r in stub.requests] == [0.0, RETRY_TEMPERATURE]


async def test_the_manifests_top_p_and_seed_reach_every_attempt_each_with_its_own_seed() -> None:
    sampled = MANIFEST.model_copy(
        update={"decoding": Decoding(temperature=0.2, top_p=0.9, max_tokens=8, seed=7)}
    )
    replies = [reply("bad"), reply("bad"), reply("good"), reply("good")]
    with openai_stub(replies, free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url) as client:
            [got] = await answer(client, "m", sampled, [EXAMPLE], check=no_bad, retries=2)
            await answer(client, "m", MANIFEST, [EXAMPLE])
    assert got.output == {"word": "good"}
    assert [(r["top_p"], r["seed"], r["max_tokens"]) for r in stub.requests[:3]] == [
        (0.9, 7, 8),
        (0.9, 8, 8),
        (0.9, 9, 8),
    ]
    assert "seed" not in stub.requests[3]  # no seed in the manifest: none sent


async def test_an_answer_that_never_passes_has_no_output_and_no_confidence() -> None:
    with openai_stub([reply("bad")], free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url) as client:
            [got] = await answer(
                client, "m", MANIFEST, [EXAMPLE], logprobs=True, check=no_bad, retries=2
            )
            [unchecked] = await answer(client, "m", MANIFEST, [EXAMPLE], logprobs=True)
    assert got.output is None and got.confidence is None
    assert len(stub.requests) == 4  # three attempts, then one unchecked call
    assert unchecked.output == {"word": "bad"} and unchecked.confidence is not None


async def test_calibration_escalates_answers_that_fail_the_check_at_any_threshold() -> None:
    def score(_examples: Any, predictions: Any) -> dict[str, float]:
        return {"score": 1.0 if predictions[0] == {"word": "good"} else 0.0}

    with openai_stub([reply("bad", -0.01)], free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url) as client:
            result = await calibrate(
                client, "m", MANIFEST, [EXAMPLE], score, target_quality=0.9, check=no_bad,
                retries=1,
            )  # fmt: skip
    # Sure of itself (p = 0.99) but failing the check: escalated even at threshold 0.
    assert result.student_quality == 0.0
    assert result.chosen is not None and result.chosen.threshold == 0.0
    assert result.chosen.escalation_rate == 1.0 and result.chosen.quality == 1.0


def upper(_input: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    return {"word": str(output["word"]).upper()}


async def test_a_finish_step_repairs_the_answer_before_the_check_and_is_reported_apart() -> None:
    def no_lower(_input: dict[str, Any], output: dict[str, Any]) -> str | None:
        return None if output["word"].isupper() else "lower case"

    gold = Example(input={"text": "hi"}, output={"word": "GOOD"})
    with openai_stub([reply("good")], free_port()) as stub:
        async with ModelClient(Settings(), base_url=stub.url) as client:
            [got] = await answer(client, "m", MANIFEST, [gold], check=no_lower, finish=upper)
            report = await evaluate(
                client, "m", MANIFEST, [gold], exact_match, metric="exact_match",
                check=no_lower, finish=upper,
            )  # fmt: skip
    assert got.output == {"word": "GOOD"} and got.model_output == {"word": "good"}
    assert len(stub.requests) == 2  # passed the check once finished: no retry
    assert report.score == 1.0 and report.check_pass == 1.0
    assert report.model_only is not None and report.model_only["score"] == 0.0
