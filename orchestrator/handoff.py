"""The typed handoff: each specialist's input, built from the task input and earlier outputs.

The task input seeds every step (a string stands for ``{"text": ...}``). Each finished dependency
then contributes its output: fields named like the next specialist's input fields flow as they
are, and a producer may map its output onto the next input explicitly in its manifest
(``handoff: {text: redacted_text}`` makes the PII-redacted text the text that entity extraction
reads). Only the fields the next specialist declares are passed, and the result is validated
against its input schema before any model sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jsonschema

from swarm.catalog import SpecialistRecord


def as_input(task_input: str | dict[str, Any]) -> dict[str, Any]:
    """A task input as an object: a plain string is the ``text`` field."""
    return {"text": task_input} if isinstance(task_input, str) else dict(task_input)


def build_input(
    task_input: str | dict[str, Any],
    target: SpecialistRecord,
    dependencies: Sequence[tuple[SpecialistRecord, Any]] = (),
) -> dict[str, Any]:
    """The target's input from the task input and its dependencies' (producer, output) pairs."""
    fields = as_input(task_input)
    wanted = set((target.input_schema.get("properties") or {}).keys())
    for producer, output in dependencies:
        if not isinstance(output, dict):
            continue
        for name, value in output.items():
            if name in wanted:
                fields[name] = value
        for name, source in ((producer.manifest or {}).get("handoff") or {}).items():
            if source in output:
                fields[name] = output[source]
    if wanted:
        fields = {k: v for k, v in fields.items() if k in wanted}
    return fields


def missing_input_fields(step_input: dict[str, Any], target: SpecialistRecord) -> list[str]:
    """Required input fields of ``target`` that ``step_input`` lacks."""
    required = target.input_schema.get("required") or []
    return [name for name in required if name not in step_input]


def input_problem(step_input: dict[str, Any], target: SpecialistRecord) -> str | None:
    """None if ``step_input`` satisfies the target's input schema, else what is wrong."""
    missing = missing_input_fields(step_input, target)
    if missing:
        return f"needs input field(s) {', '.join(repr(m) for m in missing)}"
    try:
        jsonschema.validate(step_input, target.input_schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "input"
        return f"input does not match its schema at {where}: {exc.message}"
    return None
