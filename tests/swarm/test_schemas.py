"""Compiled JSON Schema validators: compiled once, found again, and the errors they word."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema.exceptions import SchemaError

from specialists.builtin import BUILTINS
from swarm import schemas
from swarm.schemas import schema_problem, schema_validator

SCHEMA = {
    "type": "object",
    "properties": {"sql": {"type": "string"}, "rows": {"type": "integer", "minimum": 0}},
    "required": ["sql"],
}


def test_a_schema_is_compiled_once_whether_it_comes_back_or_an_equal_copy_does() -> None:
    validator = schema_validator(SCHEMA)
    assert schema_validator(SCHEMA) is validator
    assert schema_validator(copy.deepcopy(SCHEMA)) is validator
    other = {"type": "object", "required": ["text"]}
    assert schema_validator(other) is not validator


def test_problems_say_where_and_why() -> None:
    assert schema_problem(SCHEMA, {"sql": "SELECT 1", "rows": 2}, root="output") is None
    assert schema_problem(SCHEMA, {}, root="output") == "at output: 'sql' is a required property"
    assert schema_problem(SCHEMA, {"sql": "x", "rows": -1}, root="output") == (
        "at rows: -1 is less than the minimum of 0"
    )


def test_a_schema_that_is_not_json_schema_is_refused() -> None:
    with pytest.raises(SchemaError):
        schema_validator({"type": "no-such-type"})


# Every built-in schema, and instances on both sides of each rule they use.
VERDICT_CASES = [
    (BUILTINS["pii"].manifest.output_schema, {"redacted_text": "[EMAIL]", "spans": []}),
    (BUILTINS["pii"].manifest.output_schema, {"redacted_text": "x", "spans": [{"text": 1}]}),
    (BUILTINS["pii"].manifest.output_schema, {"redacted_text": "x", "spans": [], "extra": 1}),
    (
        BUILTINS["entities"].manifest.output_schema,
        {"entities": [{"text": "Acme", "type": "ORGANIZATION"}]},
    ),
    (
        BUILTINS["entities"].manifest.output_schema,
        {"entities": [{"text": "Acme", "type": "NOT_A_TYPE"}]},
    ),
    (BUILTINS["sql"].manifest.output_schema, {"sql": "SELECT 1"}),
    (BUILTINS["sql"].manifest.output_schema, {"sql": None}),
    (BUILTINS["sql"].manifest.input_schema, {"question": "q", "schema": "CREATE TABLE t (a INT);"}),
    (BUILTINS["sql"].manifest.input_schema, {"question": "q"}),
    ({"type": "string", "pattern": "^[A-Z]{2}$"}, "DE"),
    ({"type": "string", "pattern": "^[A-Z]{2}$"}, "de"),
    ({"type": "string", "format": "email"}, "not an email"),  # formats only annotate
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 2}, [1, 2, 3]),
    (SCHEMA, {"sql": "x", "rows": 1.5}),
]


@pytest.mark.parametrize(("schema", "instance"), VERDICT_CASES)
def test_the_fast_path_and_jsonschema_agree(schema: dict[str, Any], instance: Any) -> None:
    validator = schema_validator(schema)
    assert schemas._fast_twin(validator) is not None  # jsonschema-rs is a dependency
    alone = next(iter(validator.iter_errors(instance)), None) is None
    assert schemas._fast_twin(validator).is_valid(instance) is alone
    assert (schemas.problem(validator, instance, root="output") is None) is alone


def test_without_the_fast_path_the_verdicts_and_words_are_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = [schemas.problem(schema_validator(s), i, root="output") for s, i in VERDICT_CASES]
    monkeypatch.setattr(schemas, "rust_validator_for", None)
    monkeypatch.setattr(schemas, "_fast", {})
    after = [schemas.problem(schema_validator(s), i, root="output") for s, i in VERDICT_CASES]
    assert after == before
    assert sum(p is None for p in after) == 6
