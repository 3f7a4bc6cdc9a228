"""Compiled JSON Schema validators: the one place hot paths validate instances.

``jsonschema.validate`` checks the schema against its metaschema on every call, which costs far
more than validating a small instance. Workers, the orchestrator, the API and the model client
validate every step's input and output, so they compile each distinct schema once here.

A valid instance, the common case, is confirmed by ``jsonschema-rs`` (compiled Rust, an order of
magnitude faster than the pure-Python validator) when it is installed and accepts the schema.
Anything it rejects is validated again by ``jsonschema``, which stays the authority: every error
message, and every verdict of invalid, comes from it.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

try:
    from jsonschema_rs import validator_for as rust_validator_for
except ImportError:  # optional: the pure-Python validator alone gives the same verdicts
    rust_validator_for = None  # type: ignore[assignment]

MAX_COMPILED_SCHEMAS = 256

_compiled: dict[str, Validator] = {}
_by_identity: dict[int, tuple[dict[str, Any], Validator]] = {}
"""The same schema objects come back on every call (a catalog record's, a manifest's): found by
``id`` first, which skips serialising the schema into the key. Each entry holds its schema, so
the id cannot be reused by another object while the entry lives."""
_fast: dict[int, tuple[Validator, Any]] = {}
"""A compiled validator's ``jsonschema-rs`` twin (None where there is none), by identity."""


def schema_validator(schema: dict[str, Any]) -> Validator:
    """A validator for ``schema``, compiled (and the schema checked) once per distinct schema.

    Raises ``jsonschema.SchemaError`` for a schema that is not valid JSON Schema.
    """
    known = _by_identity.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    key = json.dumps(schema, sort_keys=True)
    validator = _compiled.get(key)
    if validator is None:
        cls = validator_for(schema)
        cls.check_schema(schema)
        validator = cls(schema)
        if len(_compiled) >= MAX_COMPILED_SCHEMAS:
            _compiled.clear()
        _compiled[key] = validator
    if len(_by_identity) >= MAX_COMPILED_SCHEMAS:
        _by_identity.clear()
    _by_identity[id(schema)] = (schema, validator)
    return validator


def _fast_twin(validator: Validator) -> Any:
    known = _fast.get(id(validator))
    if known is not None and known[0] is validator:
        return known[1]
    twin = None
    if rust_validator_for is not None:
        try:
            # Formats are annotations, as in ``jsonschema`` without a FormatChecker; no $ref is
            # ever fetched over the network.
            schema: Any = validator.schema
            twin = rust_validator_for(schema, validate_formats=False, offline=True)
        except Exception:  # a schema it does not take: the pure-Python validator alone
            twin = None
    if len(_fast) >= MAX_COMPILED_SCHEMAS:
        _fast.clear()
    _fast[id(validator)] = (validator, twin)
    return twin


def first_error(validator: Validator, instance: Any) -> ValidationError | None:
    """The error ``jsonschema.validate`` would raise for ``instance``, or None if it is valid."""
    twin = _fast_twin(validator)
    if twin is not None:
        try:
            if twin.is_valid(instance):
                return None
        except Exception:  # an instance it cannot read (not plain JSON data): ask jsonschema
            pass
    error = best_match(validator.iter_errors(instance))
    return error if isinstance(error, ValidationError) else None


def problem(validator: Validator, instance: Any, *, root: str) -> str | None:
    """None if ``instance`` is valid, else where and why not (``at <path>: <why>``).

    ``root`` names the top when the error is not inside a field (``output``, ``input``).
    """
    error = first_error(validator, instance)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or root
    return f"at {where}: {error.message}"


def schema_problem(schema: dict[str, Any], instance: Any, *, root: str) -> str | None:
    """:func:`problem` against ``schema``, compiled once (:func:`schema_validator`)."""
    return problem(schema_validator(schema), instance, root=root)
