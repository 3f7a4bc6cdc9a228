"""Planners: the model planner under a schema, falling back to the manifest rules."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrator.planner import ModelPlanner, RulePlanner, chain
from swarm.catalog import SpecialistRecord
from swarm.errors import InvalidOutput, InvalidPlan, ModelUnavailable

from adapterfactory import manifest_of

TEXT_IN = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}
SQL_IN = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "schema": {"type": "string"}},
    "required": ["question", "schema"],
}


def record(
    name: str,
    description: str,
    *,
    keywords: list[str] | None = None,
    input_schema: dict[str, Any] = TEXT_IN,
    status: str = "ready",
    **manifest: Any,
) -> SpecialistRecord:
    return SpecialistRecord.model_validate(
        {
            "name": name,
            "status": status,
            "description": description,
            "reason": None if status == "ready" else "broken weights",
            "manifest": manifest_of(
                name,
                description=description,
                keywords=keywords or [],
                input_schema=input_schema,
                **manifest,
            ),
        }
    )


SQL = record(
    "sql",
    "Turns a question into one SQL query over a schema.",
    keywords=["query", "how many"],
    input_schema=SQL_IN,
)
PII = record(
    "pii",
    "Finds personal data (names, emails, phone numbers, addresses) and redacts it.",
    keywords=["redact", "anonymize"],
    handoff={"text": "redacted_text"},
)
ENTITIES = record(
    "entities",
    "Extracts named entities (people, organizations, locations) from text.",
    keywords=["extract"],
)
BROKEN = record("ocr", "Reads text from scanned pages.", keywords=["scan"], status="rejected")
CATALOG = [SQL, PII, ENTITIES, BROKEN]


@dataclass
class Reply:
    json: Any


class ScriptedChat:
    """Stands in for the model server: answers every call with the next scripted outcome."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[dict[str, Any]] = []

    async def chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        output_schema: dict[str, Any],
        max_tokens: int,
        temperature: float,
    ) -> Reply:
        self.calls.append({"model": model, "messages": messages, "schema": output_schema})
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await asyncio.sleep(60)
        return Reply(outcome)


def specialists(steps: list[Any]) -> list[str]:
    return [s.specialist for s in steps]


async def test_rules_match_names_and_keywords_in_a_fixed_order() -> None:
    steps, source = await RulePlanner().plan(
        "extract the entities after you redact it", "Ann wrote", CATALOG
    )
    assert source == "rules"
    assert steps == chain(["pii", "entities"])
    assert steps[1].depends_on == ["s1"]


async def test_rules_match_phrases_and_skip_rejected_specialists() -> None:
    steps, _ = await RulePlanner().plan("how many pages did we scan", {}, CATALOG)
    assert specialists(steps) == ["sql"]


async def test_rules_fall_back_to_the_description() -> None:
    steps, _ = await RulePlanner().plan("find the email addresses", "x", CATALOG)
    assert specialists(steps) == ["pii"]


async def test_a_manifest_order_overrides_the_default() -> None:
    first = record("summary", "Summarises text.", keywords=["summarise"], order=-1)
    steps, _ = await RulePlanner().plan("redact and summarise", "x", [PII, first])
    assert specialists(steps) == ["summary", "pii"]


async def test_rules_with_no_match_ask_for_an_explicit_plan() -> None:
    with pytest.raises(InvalidPlan, match="pass an explicit plan") as caught:
        await RulePlanner().plan("paint a picture", "x", CATALOG)
    assert "(entities, pii, sql)" in str(caught.value)


async def test_the_model_plans_under_a_schema_of_ready_specialists() -> None:
    chat = ScriptedChat({"steps": ["pii", "pii", "entities"]})
    planner = ModelPlanner(chat, "base", max_steps=4)
    steps, source = await planner.plan("clean it up", "Ann wrote to Bob", CATALOG)
    assert source == "planner"
    assert specialists(steps) == ["pii", "entities"]  # the stutter is dropped
    call = chat.calls[0]
    assert call["model"] == "base"
    items = call["schema"]["properties"]["steps"]
    assert items["items"]["enum"] == ["sql", "pii", "entities"]
    assert (items["minItems"], items["maxItems"]) == (1, 4)
    prompt = "\n".join(m["content"] for m in call["messages"])
    assert "- pii: Finds personal data" in prompt and "ocr" not in prompt
    assert "Goal: clean it up" in prompt and "Ann wrote to Bob" in prompt


@pytest.mark.parametrize(
    "outcome",
    [
        pytest.param({"steps": []}, id="empty"),
        pytest.param({"steps": ["ocr"]}, id="not-ready"),
        pytest.param({"plan": "pii"}, id="off-schema"),
        pytest.param("pii then entities", id="not-an-object"),
        pytest.param({"steps": ["sql"]}, id="inputs-missing"),
        pytest.param(InvalidOutput("cut off"), id="invalid-output"),
        pytest.param(ModelUnavailable("down"), id="unreachable"),
        pytest.param(RuntimeError("client bug"), id="client-bug"),
        pytest.param("hang", id="timeout"),
    ],
)
async def test_an_unusable_model_plan_falls_back_to_rules(outcome: Any) -> None:
    planner = ModelPlanner(ScriptedChat(outcome), "base", timeout_s=0.2)
    steps, source = await planner.plan("redact this", "Ann wrote", CATALOG)
    assert (source, specialists(steps)) == ("rules", ["pii"])


async def test_a_bare_chat_function_plans_too() -> None:
    chat = ScriptedChat({"steps": ["pii", "entities"]})
    planner = ModelPlanner(chat.chat, "base")
    steps, source = await planner.plan("clean it up", "Ann wrote to Bob", CATALOG)
    assert (source, specialists(steps)) == ("planner", ["pii", "entities"])
    assert [s.depends_on for s in steps] == [[], ["s1"]]


async def test_a_reply_without_json_falls_back_to_rules() -> None:
    async def chat(
        model: str,
        messages: list[dict[str, str]],
        *,
        output_schema: dict[str, Any],
        max_tokens: int,
        temperature: float,
    ) -> Any:
        return object()  # a client that forgot to parse the reply

    planner = ModelPlanner(chat, "base")
    steps, source = await planner.plan("redact this", "Ann wrote", CATALOG)
    assert (source, specialists(steps)) == ("rules", ["pii"])


async def test_when_neither_model_nor_rules_can_plan_the_plan_is_invalid() -> None:
    planner = ModelPlanner(ScriptedChat(ModelUnavailable("down")), "base")
    with pytest.raises(InvalidPlan):
        await planner.plan("paint a picture", "x", CATALOG)
