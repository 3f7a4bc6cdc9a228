"""The typed handoff: inputs built from the task input and earlier outputs, checked by schema."""

from __future__ import annotations

from typing import Any

from swarm.catalog import SpecialistRecord
from swarm.handoff import (
    build_input,
    input_problem,
    missing_input_fields,
    plan_input_problems,
)
from swarm.messages import StepSpec

from adapterfactory import manifest_of

TEXT_IN = {"type": "object", "properties": {"text": {"type": "string", "minLength": 1}}}


def record(
    name: str,
    input_schema: dict[str, Any],
    output_schema: dict[str, Any] | None = None,
    **manifest: Any,
) -> SpecialistRecord:
    return SpecialistRecord(
        name=name,
        status="ready",
        description=name,
        manifest=manifest_of(
            name,
            input_schema=input_schema,
            output_schema=output_schema or {"type": "object"},
            **manifest,
        ),
    )


PII = record(
    "pii",
    {**TEXT_IN, "required": ["text"]},
    {
        "type": "object",
        "properties": {"redacted_text": {"type": "string"}, "spans": {"type": "array"}},
    },
    handoff={"text": "redacted_text"},
)
ENTITIES = record(
    "entities",
    {**TEXT_IN, "required": ["text"]},
    {"type": "object", "properties": {"entities": {"type": "array"}}},
)
SQL = record(
    "sql",
    {
        "type": "object",
        "properties": {"question": {"type": "string"}, "schema": {"type": "string"}},
        "required": ["question", "schema"],
    },
    {"type": "object", "properties": {"sql": {"type": "string"}}},
)
CATALOG = {r.name: r for r in (PII, ENTITIES, SQL)}


def test_a_string_input_is_the_text_field() -> None:
    assert build_input("hello", PII) == {"text": "hello"}


def test_only_declared_fields_are_passed() -> None:
    task_input = {"text": "t", "question": "q", "schema": "s"}
    assert build_input(task_input, PII) == {"text": "t"}
    assert build_input(task_input, SQL) == {"question": "q", "schema": "s"}


def test_a_declared_handoff_replaces_the_task_text() -> None:
    output = {"redacted_text": "[PERSON] called", "spans": []}
    assert build_input("Ann called", ENTITIES, [(PII, output)]) == {"text": "[PERSON] called"}


def test_an_explicit_handoff_beats_a_same_named_output_field() -> None:
    producer = record("p", TEXT_IN, handoff={"text": "clean"})
    output = {"text": "raw", "clean": "clean"}
    assert build_input("x", ENTITIES, [(producer, output)]) == {"text": "clean"}


def test_output_fields_named_like_inputs_flow_and_later_dependencies_win() -> None:
    first = record("a", TEXT_IN)
    second = record("b", TEXT_IN)
    got = build_input("orig", ENTITIES, [(first, {"text": "one"}), (second, {"text": "two"})])
    assert got == {"text": "two"}


def test_a_specialist_without_declared_properties_takes_everything() -> None:
    anything = record("any", {"type": "object"})
    assert build_input({"a": 1}, anything, [(PII, {"redacted_text": "r"})]) == {
        "a": 1,
        "text": "r",
    }


def test_missing_fields_are_named() -> None:
    assert missing_input_fields("some text", SQL) == ["question", "schema"]
    assert missing_input_fields({"question": "q"}, SQL) == ["schema"]
    assert missing_input_fields({"text": "t"}, PII) == []


def test_the_problem_tells_the_user_what_to_add() -> None:
    assert (
        input_problem("s2", SQL, {"question": "q"})
        == "step 's2' (sql) needs input field 'schema'; add it to the task input"
    )
    assert input_problem("s2", SQL, {}) == (
        "step 's2' (sql) needs input fields 'question' and 'schema'; add them to the task input"
    )
    assert input_problem("s1", PII, {"text": "t"}) is None


def test_a_schema_violation_says_where() -> None:
    problem = input_problem("s1", PII, {"text": ""})
    assert problem is not None
    assert problem.startswith("step 's1' (pii) input does not match its schema at text:")


def test_a_plan_is_checked_from_the_schemas_alone() -> None:
    steps = [
        StepSpec(id="s1", specialist="pii"),
        StepSpec(id="s2", specialist="entities", depends_on=["s1"]),
    ]
    assert plan_input_problems(steps, "text", CATALOG) == []
    bad = [*steps, StepSpec(id="s3", specialist="sql", depends_on=["s2"])]
    assert plan_input_problems(bad, "text", CATALOG) == [
        "step 's3' (sql) needs input fields 'question' and 'schema'"
    ]
    assert plan_input_problems(bad, {"text": "t", "question": "q", "schema": "s"}, CATALOG) == []
