"""What the API's requests and answers hold: the task body, the accepted and listed tasks,
health."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from swarm import plans
from swarm.http.problems import Problem
from swarm.messages import (
    StepSpec,
)
from swarm.tasks import (
    TaskRecord,
)

log = logging.getLogger(__name__)


def _plan_item_kind(value: Any) -> str:
    # Tags named like pydantic's own union tags, so problems.validation_errors drops them from
    # error locations: an error says 'plan.0.id: Field required', not 'plan.0.StepSpec.id'.
    return "str" if isinstance(value, str) else "StepSpec"


PlanItem = Annotated[
    Annotated[str, Tag("str")] | Annotated[StepSpec, Tag("StepSpec")],
    Discriminator(_plan_item_kind),
]


class TaskIn(BaseModel):
    """A task to run: an input, and either a plan or a goal for the planner."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "input": {"text": "Maria Lopez (maria@example.com) joined Acme in Berlin."},
                    "plan": ["pii", "entities"],
                },
                {
                    "input": {"text": "Ask the sales table how many orders came from Berlin."},
                    "plan": [
                        {"id": "clean", "specialist": "pii", "depends_on": []},
                        {"id": "query", "specialist": "sql", "depends_on": ["clean"]},
                    ],
                },
                {"input": "Call me at +1 555 0100.", "goal": "redact personal data"},
            ],
            # A deadline is given one way or the other, never both.
            "not": {"required": ["deadline_s", "deadline"]},
            # A plan, or a goal in words for the planner.
            "anyOf": [
                {"required": ["plan"], "properties": {"plan": {"type": "array"}}},
                {
                    "required": ["goal"],
                    "properties": {"goal": {"type": "string", "pattern": r"\S"}},
                },
            ],
        },
    )

    input: str | dict[str, Any] = Field(
        description="Text (seen by specialists as {'text': ...}), or a JSON object of fields.",
        # Text must not be blank; JSON Schema applies "pattern" to strings only.
        json_schema_extra={"pattern": r"\S"},
    )
    plan: list[PlanItem] | None = Field(
        None,
        description=f"Specialist names, run in order, or steps with dependencies "
        f"(at most {plans.MAX_STEPS}). Either a plan or a goal is required.",
    )
    goal: str | None = Field(None, description="What to do, in words, for the planner.")
    deadline_s: float | None = Field(
        None, gt=0, description="Seconds from now after which the task fails (at most a day)."
    )
    deadline: AwareDatetime | None = Field(
        None, description="When the task fails if not done, with a time zone; or use deadline_s."
    )

    @field_validator("input", mode="before")
    @classmethod
    def _some_input(cls, value: Any) -> Any:
        # One message instead of one per union member ('should be a valid string', '... dict').
        if not isinstance(value, str | dict):
            raise ValueError("must be a string or a JSON object")
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty; pass the text to work on")
        return value

    @model_validator(mode="after")
    def _plan_or_goal(self) -> TaskIn:
        if self.plan is None and not (self.goal or "").strip():
            raise ValueError(
                "pass either a 'plan' (specialist names, or steps) or a 'goal' for the planner"
            )
        if self.deadline_s is not None and self.deadline is not None:
            raise ValueError("pass 'deadline_s' or 'deadline', not both")
        return self


class TaskLinks(BaseModel):
    self: str = Field(description="The task's state.")
    events: str = Field(description="The task's server-sent events.")


class TaskAccepted(BaseModel):
    """A task the API stored and handed to the orchestrators."""

    id: str
    state: str
    links: TaskLinks


def _hide_owner(schema: dict[str, Any]) -> None:
    schema.get("properties", {}).pop("owner", None)


class TaskOut(TaskRecord):
    """A task as the API shows it: state, every step (specialist, adapter, latency, tokens,
    output) and the result. Never its owner."""

    model_config = ConfigDict(json_schema_extra=_hide_owner)


class TaskPage(BaseModel):
    """One page of the caller's tasks, newest first."""

    tasks: list[TaskOut]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next (older) page; absent at the end."
    )


CURSOR_PATTERN = r"^[0-9]{1,20}-[A-Za-z0-9_.:-]{1,128}$"

ISO_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]{2,15}(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"

ISO_TIME = "(an ISO 8601 date and time; UTC if it names no offset)"


def moment(name: str, text: str | None) -> datetime | None:
    """A query's ISO 8601 time, read as UTC when it names no offset; a 422 if it is no time."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Problem(
            422, f"query {name}: {text!r} is no ISO 8601 time; e.g. 2026-12-05T14:00:00Z",
            kind="validation-error",
        ) from None  # fmt: skip
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Health(BaseModel):
    status: str = Field(description="'ok': the process is up.")


class Readiness(BaseModel):
    status: str = Field(description="'ready'.")
    checks: dict[str, str] = Field(description="Each dependency and 'ok' (or what failed).")
