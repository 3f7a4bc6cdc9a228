import json

import pytest

from swarm.errors import InvalidMessage
from swarm.messages import (
    Cancel,
    Envelope,
    StepRequest,
    StepResult,
    StepSpec,
    TaskEvent,
    TaskSubmitted,
    envelope,
)


def test_every_body_round_trips_through_the_envelope() -> None:
    bodies = [
        TaskSubmitted(input="hello", goal="redact"),
        StepRequest(step=StepSpec(id="s1", specialist="pii"), task_input={"text": "x"}),
        StepResult(step_id="s1", specialist="pii", output={"text": "y"}, valid=True),
        TaskEvent(kind="state", state="working"),
        Cancel(),
    ]
    for body in bodies:
        message = envelope("t1", body)
        decoded = Envelope.decode(message.encode())
        assert decoded == message
        assert type(decoded.body) is type(body)


def test_envelope_carries_ids_attempt_and_timestamps() -> None:
    message = envelope("t1", Cancel())
    data = json.loads(message.encode())
    assert data["schema_version"] == 1
    assert len(data["id"]) == 32 and len(data["trace_id"]) == 32
    assert data["task_id"] == "t1" and data["attempt"] == 1
    assert data["created_at"] and data["sent_at"]


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        (b"not json", "payload"),
        (b'{"task_id": "t", "body": {"type": "task.unknown"}}', "body"),
        (
            b'{"task_id": "t", "body": {"type": "task.cancel", "extra": 1}}',
            "body.task.cancel.extra",
        ),
        (
            b'{"schema_version": 2, "task_id": "t", "body": {"type": "task.cancel"}}',
            "schema_version",
        ),
        (b'{"body": {"type": "task.cancel"}}', "task_id"),
    ],
)
def test_invalid_payloads_are_rejected_with_the_place_at_fault(payload: bytes, where: str) -> None:
    with pytest.raises(InvalidMessage, match=f"at {where}"):
        Envelope.decode(payload)


def test_accounting_and_escalation_entries_are_versioned_wire_models() -> None:
    import pydantic

    from swarm.messages import AccountingEntry, EscalationEntry

    entry = AccountingEntry(task_id="t", specialist="pii", valid=True, escalated=False,
                            latency_ms=1.5, cost_usd=0.1, all_teacher_cost_usd=0.2,
                            prompt_tokens=3, completion_tokens=4)  # fmt: skip
    raw = entry.model_dump_json()
    assert '"schema_version":1' in raw and AccountingEntry.model_validate_json(raw) == entry
    for bad in (raw.replace('"schema_version":1', '"schema_version":2'),
                raw.replace("}", ',"extra":1}')):  # fmt: skip
        with pytest.raises(pydantic.ValidationError):
            AccountingEntry.model_validate_json(bad)
    kept = EscalationEntry(input={"text": "x"}, output={"spans": []}, reason="low confidence",
                           task_id="t", step_id="s1")  # fmt: skip
    assert EscalationEntry.model_validate_json(kept.model_dump_json()) == kept
