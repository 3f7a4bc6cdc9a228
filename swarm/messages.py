"""Wire messages: the versioned envelope and the discriminated union of bodies it carries.

Every payload on a Redis stream is one :class:`Envelope` serialised as JSON. The envelope carries
routing and tracing facts (ids, attempt, timestamps, trace context); its ``body`` is one of the
message types below, told apart by their ``type`` field. A payload that does not parse is never
handed to a handler: the bus dead-letters it with the reason.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarm.errors import InvalidMessage

SCHEMA_VERSION = 1
"""Bumped on any change that an older consumer could not read."""


def new_id() -> str:
    """A fresh random id (32 hex characters)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class WireModel(BaseModel):
    """Base of everything on the wire: strict about unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenUsage(WireModel):
    prompt: int = 0
    completion: int = 0


class StepSpec(WireModel):
    """One step of a plan: which specialist runs, and which earlier steps it waits for."""

    id: str = Field(description="Step id, unique within the task.")
    specialist: str = Field(description="Registered specialist name.")
    depends_on: list[str] = Field(default_factory=list, description="Step ids this step needs.")


class TaskSubmitted(WireModel):
    """A new task, accepted by the API."""

    type: Literal["task.submitted"] = "task.submitted"
    input: str | dict[str, Any]
    plan: list[StepSpec] | None = None
    goal: str | None = None
    deadline: datetime | None = None
    owner: str | None = Field(None, description="Hash of the API key that created the task.")


class StepRequest(WireModel):
    """A handoff to a specialist: the task input, the artifacts so far, and the step to run."""

    type: Literal["step.request"] = "step.request"
    step: StepSpec
    input: dict[str, Any] = Field(
        default_factory=dict,
        description="The specialist's input, built from the task input and earlier artifacts.",
    )
    task_input: str | dict[str, Any] = Field(
        "",
        description="The whole task input; sent only when ``input`` is empty (an orchestrator "
        "builds ``input``, so a step does not carry the task input again).",
    )
    artifacts: dict[str, Any] = Field(
        default_factory=dict,
        description="Validated outputs of earlier steps, by step id (not sent by orchestrators: "
        "``input`` is built from them).",
    )
    deadline: datetime | None = None


class StepResult(WireModel):
    """What a worker produced for one step."""

    type: Literal["step.result"] = "step.result"
    step_id: str
    specialist: str
    output: Any = None
    valid: bool
    error: str | None = None
    latency_ms: float = 0.0
    tokens: TokenUsage = Field(default_factory=TokenUsage)
    adapter: str | None = Field(None, description="LoRA name served, None for the base model.")
    adapter_version: str | None = None
    attempts: int = 1
    escalated: bool = False
    escalation_reason: str | None = None
    cost_usd: float = 0.0
    all_teacher_cost_usd: float = Field(
        0.0, description="What the teacher would have charged for this step (an estimate)."
    )


TaskState = Literal["submitted", "working", "completed", "failed", "canceled", "rejected"]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "canceled", "rejected"})
"""States a task never leaves."""


class TaskEvent(WireModel):
    """Something that happened to a task, for its event log and for observers."""

    type: Literal["task.event"] = "task.event"
    kind: str = Field(description="e.g. 'state', 'step.started', 'step.completed'.")
    state: TaskState | None = None
    step_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None


class Cancel(WireModel):
    """A request to cancel a task, including any step a worker is running."""

    type: Literal["task.cancel"] = "task.cancel"
    reason: str = "canceled by request"


Body = Annotated[
    TaskSubmitted | StepRequest | StepResult | TaskEvent | Cancel,
    Field(discriminator="type"),
]


class AccountingEntry(WireModel):
    """One finished step, as the accounting stream keeps it for ``swarm report``."""

    schema_version: Literal[1] = 1
    task_id: str
    specialist: str
    valid: bool
    escalated: bool
    latency_ms: float
    cost_usd: float
    all_teacher_cost_usd: float
    prompt_tokens: int
    completion_tokens: int


class EscalationEntry(WireModel):
    """A step the teacher answered, kept for ``swarm escalations`` and retraining."""

    schema_version: Literal[1] = 1
    input: dict[str, Any]
    output: dict[str, Any]
    reason: str
    student_output: Any = None
    task_id: str
    step_id: str
    specialist_version: str | None = None
    at: datetime = Field(default_factory=utcnow)


class Envelope(WireModel):
    """The frame around every message on the bus."""

    schema_version: Literal[1] = 1
    id: str = Field(default_factory=new_id, description="Message id; redelivery keeps it.")
    task_id: str
    trace_id: str = Field(default_factory=new_id)
    traceparent: str | None = Field(None, description="W3C trace context of the sender's span.")
    attempt: int = Field(1, ge=1, description="Which try of this logical message this is.")
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime = Field(default_factory=utcnow)
    body: Body

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> Envelope:
        """Parse a payload, or raise :class:`InvalidMessage` saying what is wrong with it."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "payload"
            raise InvalidMessage(
                f"invalid message at {where}: {first['msg']} ({exc.error_count()} error(s))"
            ) from exc


def envelope(task_id: str, body: Any, **fields: Any) -> Envelope:
    """Wrap a body in a fresh envelope."""
    return Envelope(task_id=task_id, body=body, **fields)
