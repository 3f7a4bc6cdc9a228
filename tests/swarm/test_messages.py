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
