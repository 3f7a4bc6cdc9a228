"""Compiled JSON Schema validators: compiled once, found again, and the errors they word."""

from __future__ import annotations

import copy

import pytest
from jsonschema.exceptions import SchemaError

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
