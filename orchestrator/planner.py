"""Planning: which specialists a task runs through, when the caller did not say.

An explicit plan always wins and never reaches a planner. Otherwise the :class:`ModelPlanner`
asks the base model for a plan under a JSON schema whose enum is the ready specialists, showing
it each one's manifest description; if the call fails, times out, or names nothing usable, the
:class:`RulePlanner` matches the goal against the manifests. Plans are linear chains: each step
depends on the one before.

Manifest fields read here (from the typed ``SpecialistRecord.manifest``): ``description``
(via the record), the optional ``keywords`` list, and an optional integer ``order`` that places
a specialist in a rule-made chain (lower runs first).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from swarm.catalog import SpecialistRecord
from swarm.errors import InvalidPlan, SwarmError
from swarm.handoff import plan_input_problems
from swarm.messages import StepSpec
from swarm.plans import MAX_STEPS
from swarm.schemas import schema_problem

log = logging.getLogger(__name__)

PlanSource = Literal["planner", "rules"]
ORDER = {"pii": 0, "entities": 1, "sql": 2}
"""Redact first, then extract, then query: the natural order of the built-ins. A manifest's
``order`` overrides this; specialists with neither run after these, by name."""
WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    {
        "about",
        "after",
        "also",
        "each",
        "from",
        "given",
        "have",
        "input",
        "into",
        "json",
        "object",
        "output",
        "over",
        "plain",
        "some",
        "text",
        "than",
        "that",
        "their",
        "them",
        "then",
        "this",
        "with",
    }
)
"""Words too common in manifest descriptions to say anything about what a specialist does."""
PREVIEW_CHARS = 500


class Completion(Protocol):
    """What the planner needs from a chat reply: its parsed JSON."""

    @property
    def json(self) -> Any: ...


@runtime_checkable
class ChatModel(Protocol):
    """A model client that can answer under a JSON schema
    (``swarm.serving.modelclient.ModelClient``)."""

    async def chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        output_schema: dict[str, Any],
        max_tokens: int,
        temperature: float,
    ) -> Completion: ...


class ChatFunction(Protocol):
    """A bare schema-constrained chat call, e.g. ``ModelClient(settings).chat``."""

    async def __call__(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        output_schema: dict[str, Any],
        max_tokens: int,
        temperature: float,
    ) -> Completion: ...


class Planner(Protocol):
    """Turns a goal into steps over the given specialists, or raises :class:`InvalidPlan`."""

    async def plan(
        self, goal: str, task_input: str | dict[str, Any], specialists: Sequence[SpecialistRecord]
    ) -> tuple[list[StepSpec], PlanSource]: ...


def chain(names: Sequence[str]) -> list[StepSpec]:
    """Steps s1 -> s2 -> ... running the named specialists in order."""
    return [
        StepSpec(id=f"s{i}", specialist=name, depends_on=[f"s{i - 1}"] if i > 1 else [])
        for i, name in enumerate(names, start=1)
    ]


def _stem(word: str) -> str:
    # Enough to make "emails" meet "email" and "addresses" meet "address"; not linguistics.
    if word.endswith("es") and len(word) > 4 and word[-3] in "sxz":
        return word[:-2]
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _content_words(text: str) -> set[str]:
    return {_stem(w) for w in WORD.findall(text.lower()) if len(w) >= 4 and w not in STOPWORDS}


def rule_order(record: SpecialistRecord) -> tuple[int, str]:
    """Where a specialist goes in a rule-made chain: manifest ``order``, else ORDER, else last."""
    declared = record.manifest.order if record.manifest else None
    if declared is not None:
        return declared, record.name
    return ORDER.get(record.name, len(ORDER)), record.name


class RulePlanner:
    """Matches the goal against each ready specialist's name and keywords, then description.

    A specialist is chosen when the goal contains its name or one of its manifest ``keywords``
    (a keyword with a space matches as a phrase). Only when nothing matches that way do the
    description's content words count, so a keyword plan is never widened by a loose match.
    """

    async def plan(
        self, goal: str, task_input: str | dict[str, Any], specialists: Sequence[SpecialistRecord]
    ) -> tuple[list[StepSpec], PlanSource]:
        ready = [r for r in specialists if r.ready]
        text = goal.lower()
        words = set(WORD.findall(text))
        chosen = [r for r in ready if self._named(r, text, words)]
        if not chosen:
            goal_words = _content_words(goal)
            chosen = [r for r in ready if goal_words & _content_words(r.description)]
        if not chosen:
            names = ", ".join(sorted(r.name for r in ready)) or "none"
            raise InvalidPlan(
                f"could not plan the goal {goal!r} from the ready specialists ({names}); "
                'pass an explicit plan, e.g. "plan": ["pii", "entities"]'
            )
        return chain([r.name for r in sorted(chosen, key=rule_order)]), "rules"

    @staticmethod
    def _named(record: SpecialistRecord, text: str, words: set[str]) -> bool:
        if record.name.lower() in words:
            return True
        keywords = record.manifest.keywords if record.manifest else []
        for keyword in (str(k).lower().strip() for k in keywords):
            if keyword and (keyword in text if " " in keyword else keyword in words):
                return True
        return False


class ModelPlanner:
    """Asks the base model for a plan, constrained to the ready specialists.

    ``client`` is anything with a schema-constrained ``chat`` (see :class:`ChatModel`), or
    that ``chat`` function itself; ``base_model`` is the served base model's name. The call is
    bounded by ``timeout_s``. A call that raises anything, a reply that is off-schema, or a
    chain that could not get the inputs it needs falls back to ``fallback`` (the
    :class:`RulePlanner` unless given).
    """

    def __init__(
        self,
        client: ChatModel | ChatFunction,
        base_model: str,
        *,
        max_steps: int = MAX_STEPS,
        timeout_s: float = 30.0,
        fallback: Planner | None = None,
    ) -> None:
        self.client = client
        self._chat: ChatFunction = client.chat if isinstance(client, ChatModel) else client
        self.base_model = base_model
        self.max_steps = max_steps
        self.timeout_s = timeout_s
        self.fallback = fallback or RulePlanner()

    async def plan(
        self, goal: str, task_input: str | dict[str, Any], specialists: Sequence[SpecialistRecord]
    ) -> tuple[list[StepSpec], PlanSource]:
        ready = [r for r in specialists if r.ready]
        if ready:
            try:
                steps = await asyncio.wait_for(
                    self._ask(goal, task_input, ready), timeout=self.timeout_s
                )
            except Exception as exc:
                # Planning by model is an optimisation over the rules, so no failure of it, a
                # client bug included, may fail the task; the rules are always there.
                level = (
                    logging.INFO if isinstance(exc, SwarmError | TimeoutError) else logging.WARNING
                )
                log.log(
                    level,
                    "model planner failed (%s: %s); falling back to rules",
                    type(exc).__name__,
                    exc,
                )
            else:
                problems = plan_input_problems(steps, task_input, {r.name: r for r in ready})
                if steps and not problems:
                    return steps, "planner"
                log.info(
                    "model plan %s is not usable (%s); falling back to rules",
                    [s.specialist for s in steps],
                    "; ".join(problems) or "empty",
                )
        return await self.fallback.plan(goal, task_input, specialists)

    def output_schema(self, names: Sequence[str]) -> dict[str, Any]:
        """The JSON schema the model's reply is constrained to."""
        return {
            "type": "object",
            "properties": {
                "steps": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(names)},
                    "minItems": 1,
                    "maxItems": self.max_steps,
                }
            },
            "required": ["steps"],
            "additionalProperties": False,
        }

    def messages(
        self, goal: str, task_input: str | dict[str, Any], ready: Sequence[SpecialistRecord]
    ) -> list[dict[str, str]]:
        """The prompt: each ready specialist with its description, the goal, an input preview."""
        catalog = "\n".join(f"- {r.name}: {r.description}" for r in ready)
        preview = json.dumps(task_input, ensure_ascii=False, default=str)[:PREVIEW_CHARS]
        return [
            {
                "role": "system",
                "content": "You plan tasks. Choose the specialists to run, in order, from:\n"
                + catalog
                + '\nUse only the specialists the goal needs. Reply as JSON: {"steps": [...]}.',
            },
            {"role": "user", "content": f"Goal: {goal}\nInput: {preview}"},
        ]

    async def _ask(
        self, goal: str, task_input: str | dict[str, Any], ready: list[SpecialistRecord]
    ) -> list[StepSpec]:
        names = [r.name for r in ready]
        schema = self.output_schema(names)
        completion = await self._chat(
            self.base_model,
            self.messages(goal, task_input, ready),
            output_schema=schema,
            max_tokens=16 + 8 * self.max_steps,
            temperature=0.0,
        )
        reply: Any = getattr(completion, "json", None)
        # The client constrains and validates already; this guards a client that does not.
        problem = schema_problem(schema, reply, root="plan")
        if problem is not None:
            log.info("model plan is off-schema %s", problem)
            return []
        chosen = [str(n) for n in reply["steps"]]
        # A plan that repeats a specialist back to back is the small model stuttering.
        deduped = [n for i, n in enumerate(chosen) if i == 0 or n != chosen[i - 1]]
        return chain(deduped[: self.max_steps])
