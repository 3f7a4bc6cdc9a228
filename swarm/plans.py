"""Plans as callers write them: normalised to steps and checked before a task is accepted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swarm.catalog import SpecialistRecord
from swarm.errors import InvalidPlan, UnknownSpecialist
from swarm.handoff import build_input, input_problem
from swarm.messages import StepSpec

MAX_STEPS = 16


def normalise(plan: Sequence[str | StepSpec]) -> list[StepSpec]:
    """A list of names is a linear chain s1 -> s2 -> ...; steps are taken as they are."""
    if all(isinstance(item, str) for item in plan):
        return [
            StepSpec(id=f"s{i}", specialist=str(name), depends_on=[f"s{i - 1}"] if i > 1 else [])
            for i, name in enumerate(plan, start=1)
        ]
    if any(isinstance(item, str) for item in plan):
        raise InvalidPlan("a plan is either all specialist names or all steps, not a mix")
    return [item for item in plan if isinstance(item, StepSpec)]


def find_cycle(steps: Sequence[StepSpec]) -> list[str] | None:
    """A dependency cycle as a list of step ids (first repeated at the end), if there is one."""
    deps = {s.id: s.depends_on for s in steps}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in deps.get(node, []):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep] if dep in path else [node, dep]
            if state.get(dep) is None:
                found = visit(dep, [*path, dep])
                if found:
                    return found
        state[node] = 2
        return None

    for step in steps:
        if step.id not in state:
            found = visit(step.id, [step.id])
            if found:
                return found
    return None


def check_plan(
    steps: Sequence[StepSpec],
    catalog: Mapping[str, SpecialistRecord],
    *,
    max_steps: int = MAX_STEPS,
) -> None:
    """Raise a UserError saying what to fix if the plan cannot run."""
    if not steps:
        raise InvalidPlan("the plan is empty; name at least one specialist")
    if len(steps) > max_steps:
        raise InvalidPlan(f"the plan has {len(steps)} steps; at most {max_steps} are allowed")
    ids = [s.id for s in steps]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InvalidPlan(f"duplicate step id(s): {', '.join(duplicates)}")
    for step in steps:
        unknown = [d for d in step.depends_on if d not in ids]
        if unknown:
            raise InvalidPlan(f"step {step.id!r} depends on unknown step(s): {', '.join(unknown)}")
    cycle = find_cycle(steps)
    if cycle:
        raise InvalidPlan(f"the plan has a cycle: {' -> '.join(cycle)}")
    ready = sorted(name for name, r in catalog.items() if r.ready)
    for step in steps:
        record = catalog.get(step.specialist)
        if record is None:
            raise UnknownSpecialist(
                f"step {step.id!r}: no specialist named {step.specialist!r}; "
                f"registered: {', '.join(ready) or 'none'}"
            )
        if not record.ready:
            raise UnknownSpecialist(
                f"step {step.id!r}: specialist {step.specialist!r} is registered but was "
                f"rejected: {record.reason}"
            )


def first_step_input_problems(
    steps: Sequence[StepSpec],
    task_input: str | dict[str, Any],
    catalog: Mapping[str, SpecialistRecord],
) -> list[str]:
    """For steps that start from the task input alone, what their input schema misses: the
    orchestrator's own check (:func:`swarm.handoff.input_problem`), made before anything is
    stored."""
    problems = []
    for step in steps:
        if step.depends_on:
            continue
        target = catalog[step.specialist]
        problem = input_problem(step.id, target, build_input(task_input, target))
        if problem is not None:
            problems.append(problem)
    return problems
