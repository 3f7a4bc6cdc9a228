"""swarm: a runtime for small distilled specialist models.

The shared kernel: settings, wire messages, the Redis Streams bus and the error tree. Heavier
parts (model server, model client, distillation) are imported from their own modules so that
``import swarm`` stays cheap for workers and the API.
"""

from swarm.bus import Bus
from swarm.consumer import Consumer, Delivery, Reject, Retry
from swarm.errors import (
    ConfigurationError,
    DeadlineExceeded,
    InfrastructureError,
    InvalidAdapter,
    InvalidMessage,
    InvalidOutput,
    InvalidPlan,
    LimitExceeded,
    ModelBehaviorError,
    ModelServerStartError,
    ModelUnavailable,
    RedisUnavailable,
    RuleBudgetExceeded,
    SwarmError,
    UnknownSpecialist,
    UserError,
)
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
from swarm.settings import Settings, get_settings

__all__ = [
    "AsyncClient",
    "Bus",
    "Cancel",
    "Client",
    "ConfigurationError",
    "Consumer",
    "DeadlineExceeded",
    "Delivery",
    "Envelope",
    "InfrastructureError",
    "InvalidAdapter",
    "InvalidMessage",
    "InvalidOutput",
    "InvalidPlan",
    "LimitExceeded",
    "ModelBehaviorError",
    "ModelServerStartError",
    "ModelUnavailable",
    "RedisUnavailable",
    "Reject",
    "Retry",
    "RuleBudgetExceeded",
    "Settings",
    "StepRequest",
    "StepResult",
    "StepSpec",
    "SwarmError",
    "TaskEvent",
    "TaskSubmitted",
    "UnknownSpecialist",
    "UserError",
    "envelope",
    "get_settings",
]


def __getattr__(name: str) -> object:
    """``swarm.Client`` and ``swarm.AsyncClient``, imported when first used."""
    if name in ("Client", "AsyncClient"):
        from swarm import client

        return getattr(client, name)
    raise AttributeError(f"module 'swarm' has no attribute {name!r}")
