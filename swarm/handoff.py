"""The typed handoff: each specialist's input, built from the task input and earlier outputs.

The task input seeds every step (a string stands for ``{"text": ...}``). Each finished dependency
then contributes its output, in the order the step lists its dependencies: fields named like the
next specialist's input fields flow as they are, and a producer may map its output onto the next
input explicitly in its manifest (``handoff: {text: redacted_text}`` makes the PII-redacted text
the text that entity extraction reads; an explicit mapping beats a same-named field). Only the
fields the next specialist declares are passed, and the result is validated against its input
schema before any model sees it.

Manifest fields read here (from the typed ``SpecialistRecord.manifest``): ``input_schema``,
``output_schema`` and ``handoff``.

It is the one place a step's input is normalised (:func:`as_input`) and checked
(:func:`input_problem`): the API checks a plan's first steps with it, the planner and the
orchestrator every step, and the worker reads its input through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swarm import schemas
from swarm.catalog import SpecialistRecord
from swarm.messages import StepSpec


def as_input(task_input: str | Mapping[str, Any]) -> dict[str, Any]:
    """A task input as an object: a plain string is the ``text`` field."""
    return {"text": task_input} if isinstance(task_input, str) else dict(task_input)


def handoff_map(producer: SpecialistRecord) -> dict[str, str]:
    """The producer's declared ``{next input field: its output field}`` mapping."""
    return dict(producer.manifest.handoff) if producer.manifest else {}


def input_fields(target: SpecialistRecord) -> set[str]:
    """The input fields a specialist declares; empty means it takes any object as it is."""
    return set((target.input_schema.get("properties") or {}).keys())


def build_input(
    task_input: str | Mapping[str, Any],
    target: SpecialistRecord,
    dependencies: Sequence[tuple[SpecialistRecord, Any]] = (),
) -> dict[str, Any]:
    """The target's input from the task input and its dependencies' (producer, output) pairs."""
    fields = as_input(task_input)
    wanted = input_fields(target)
    for producer, output in dependencies:
        if not isinstance(output, Mapping):
            continue  # a non-object output has no fields to hand on
        for name, value in output.items():
            if name in wanted:
                fields[name] = value
        for name, source in handoff_map(producer).items():
            if source in output:
                fields[name] = output[source]
    if wanted:
        fields = {k: v for k, v in fields.items() if k in wanted}
    return fields


def missing_input_fields(
    step_input: str | Mapping[str, Any], target: SpecialistRecord
) -> list[str]:
    """Required input fields of ``target`` that ``step_input`` (or a task input) lacks."""
    given = as_input(step_input)
    required = target.input_schema.get("required") or []
    return [str(name) for name in required if name not in given]


def _quoted(names: Sequence[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def input_problem(
    step_id: str, target: SpecialistRecord, step_input: Mapping[str, Any]
) -> str | None:
    """None if ``step_input`` satisfies the target's input schema, else what the user should fix.

    The message names the step and specialist, e.g. ``step 's2' (sql) needs input field
    'schema'; add it to the task input``.
    """
    where = f"step {step_id!r} ({target.name})"
    missing = missing_input_fields(step_input, target)
    if missing:
        plural = len(missing) > 1
        return (
            f"{where} needs input field{'s' if plural else ''} {_quoted(missing)}; "
            f"add {'them' if plural else 'it'} to the task input"
        )
    mismatch = schemas.problem(target.input_validator, dict(step_input), root="input")
    if mismatch is not None:
        return f"{where} input does not match its schema {mismatch}"
    return None


def plan_input_problems(
    steps: Sequence[StepSpec],
    task_input: str | Mapping[str, Any],
    catalog: Mapping[str, SpecialistRecord],
) -> list[str]:
    """Required fields that no step could receive, judged from the schemas alone (no values).

    A step can receive the task input's fields and, from each dependency, the output fields its
    schema declares that match by name or through the producer's ``handoff``. A producer whose
    output schema declares no properties is assumed to be able to supply anything.
    """
    given = set(as_input(task_input))
    by_id = {s.id: s for s in steps}
    problems = []
    for step in steps:
        target = catalog.get(step.specialist)
        if target is None:
            problems.append(f"step {step.id!r}: no specialist named {step.specialist!r}")
            continue
        available = set(given)
        anything = False
        for dep in step.depends_on:
            producer = catalog.get(by_id[dep].specialist) if dep in by_id else None
            if producer is None:
                continue
            produced = set((producer.output_schema.get("properties") or {}).keys())
            if not produced:
                anything = True
            available |= produced
            available |= {k for k, v in handoff_map(producer).items() if v in produced}
        required = [str(n) for n in target.input_schema.get("required") or []]
        missing = [] if anything else [n for n in required if n not in available]
        if missing:
            problems.append(
                f"step {step.id!r} ({step.specialist}) needs input field"
                f"{'s' if len(missing) > 1 else ''} {_quoted(missing)}"
            )
    return problems
