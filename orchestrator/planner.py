"""Planning: which specialists a task runs through, when the caller did not say.

An explicit plan always wins and never reaches a planner. Otherwise the :class:`ModelPlanner`
asks the base model for a plan under a JSON schema whose enum is the ready specialists, showing
it each one's manifest description; if that fails or names nothing usable, the
:class:`RulePlanner` matches the goal against the manifests' names, keywords and descriptions.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from swarm.catalog import SpecialistRecord
from swarm.errors import InvalidPlan, SwarmError
from swarm.messages import StepSpec
from swarm.modelclient import ModelClient

log = logging.getLogger(__name__)

PlanSource = Literal["planner", "rules"]
ORDER = {"pii": 0, "entities": 1, "sql": 2}
"""Redact first, then extract, then query: the natural order of the built-ins."""
WORD = re.compile(r"[a-z0-9]+")


class Planner(Protocol):
    async def plan(
        self, goal: str, task_input: str | dict[str, Any], specialists: Sequence[SpecialistRecord]
    ) -> tuple[list[StepSpec], PlanSource]: ...


def chain(names: Sequence[str]) -> list[StepSpec]:
    """Steps s1 -> s2 -> ... running the named specialists in order."""
    steps: list[StepSpec] = []
    for i, name in enumerate(names, start=1):
        steps.append(
            StepSpec(id=f"s{i}", specialist=name, depends_on=[f"s{i - 1}"] if i > 1 else [])
        )
    return steps


def _order(name: str) -> tuple[int, str]:
    return ORDER.get(name, len(ORDER)), name


class RulePlanner:
    """Matches the goal's words against each ready specialist's name, keywords, description."""

    async def plan(
        self, goal: str, task_input: str | dict[str, Any], specialists: Sequence[SpecialistRecord]
    ) -> tuple[list[StepSpec], PlanSource]:
        text = goal.lower()
        words = set(WORD.findall(text))
        chosen = []
        for record in specialists:
            if not record.ready:
                continue
            keywords = [str(k).lower() for k in (record.manifest or {}).get("keywords") or []]
            if record.name in words or any(
                (k in text if " " in k else k in words) for k in keywords
            ):
                chosen.append(record.name)
        if not chosen:
            ready = ", ".join(sorted(r.name for r in specialists if r.ready)) or "none"
            raise InvalidPlan(
                f"could not plan the goal {goal!r} from the registered specialists ({ready}); "
                "pass an explicit plan"
            )
        return chain(sorted(chosen, key=_order)), "rules"


class ModelPlanner:
    """Asks the base model for a plan, constrained to the ready specialists."""

    def __init__(
        self,
        client: ModelClient,
        base_model: str,
        *,
        max_steps: int = 16,
        fallback: Planner | None = None,
    ) -> None:
        self.client = client
        self.base_model = base_model
        self.max_steps = max_steps
        self.fallback = fallback or RulePlanner()

    async def plan(
        self, goal: str, task_input: str | dict[str, Any], specialists: Sequence[SpecialistRecord]
    ) -> tuple[list[StepSpec], PlanSource]:
        ready = [r for r in specialists if r.ready]
        if ready:
            try:
                names = await self._ask(goal, task_input, ready)
                if names:
                    return chain(names), "planner"
            except SwarmError as exc:
                log.info("model planner failed (%s); falling back to rules", exc)
        return await self.fallback.plan(goal, task_input, specialists)

    async def _ask(
        self, goal: str, task_input: str | dict[str, Any], ready: list[SpecialistRecord]
    ) -> list[str]:
        names = [r.name for r in ready]
        schema = {
            "type": "object",
            "properties": {
                "steps": {
                    "type": "array",
                    "items": {"type": "string", "enum": names},
                    "minItems": 1,
                    "maxItems": self.max_steps,
                }
            },
            "required": ["steps"],
            "additionalProperties": False,
        }
        catalog = "\n".join(f"- {r.name}: {r.description}" for r in ready)
        preview = json.dumps(task_input)[:500]
        messages = [
            {
                "role": "system",
                "content": "You plan tasks. Choose the specialists to run, in order, from:\n"
                + catalog
                + '\nReply as JSON: {"steps": [...]}.',
            },
            {"role": "user", "content": f"Goal: {goal}\nInput: {preview}"},
        ]
        completion = await self.client.chat(
            self.base_model, messages, output_schema=schema, max_tokens=64, temperature=0.0
        )
        chosen = [n for n in completion.json["steps"] if n in names]
        # A plan that repeats a specialist back to back is the small model stuttering.
        deduped = [n for i, n in enumerate(chosen) if i == 0 or n != chosen[i - 1]]
        return deduped[: self.max_steps]
