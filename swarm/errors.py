"""The swarm error tree. Every error says who is at fault and what to do about it.

::

    SwarmError
    ├── UserError                 bad input: the caller can fix it (HTTP 4xx)
    │   ├── InvalidMessage        a wire payload that is not a valid swarm message
    │   ├── InvalidAdapter        an adapter folder that cannot be served, with the reason
    │   ├── UnknownSpecialist     a plan names a specialist nobody registered
    │   ├── InvalidPlan           a cyclic or empty plan
    │   ├── InvalidData           a dataset file (JSONL) that cannot be used
    │   └── ConfigurationError    a setting that cannot work
    ├── ModelBehaviorError        a model answered, but not with what the schema demands
    │   └── InvalidOutput         output failed JSON parsing or schema validation
    ├── InfrastructureError       something we depend on is down or broken
    │   ├── RedisUnavailable
    │   ├── ModelUnavailable      vLLM (or the teacher) unreachable or 5xx after retries
    │   └── ModelServerStartError serve-model could not start vLLM
    └── LimitExceeded             a bound was hit
        ├── DeadlineExceeded      swarm.Client.wait timed out (the task goes on)
        └── RuleBudgetExceeded    a specialist's finish or check ran past its time budget

Third-party errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class SwarmError(Exception):
    """Base of every error swarm raises on purpose."""


class UserError(SwarmError):
    """The caller's input is wrong; the message says how to fix it."""


class InvalidMessage(UserError):
    """A wire payload that does not parse as a swarm message."""


class InvalidAdapter(UserError):
    """An adapter folder that cannot be served."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"adapter {name!r} rejected: {reason}")
        self.name = name
        self.reason = reason


class UnknownSpecialist(UserError):
    """A plan names a specialist that is not registered."""


class InvalidPlan(UserError):
    """A plan that cannot run: empty, cyclic, or too long."""


class InvalidData(UserError):
    """A dataset file that cannot be read or used, with the file and line at fault."""


class ConfigurationError(UserError):
    """A setting that cannot work."""


class ModelBehaviorError(SwarmError):
    """The model answered, but not in the shape that was asked for."""


class InvalidOutput(ModelBehaviorError):
    """Output that failed JSON parsing or schema validation."""

    def __init__(self, message: str, *, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class InfrastructureError(SwarmError):
    """A dependency is down or broken; retrying later may help."""


class RedisUnavailable(InfrastructureError):
    """Redis cannot be reached."""


class ModelUnavailable(InfrastructureError):
    """A model server cannot be reached or keeps failing."""


class ModelServerStartError(InfrastructureError):
    """``swarm serve-model`` could not start vLLM."""


class LimitExceeded(SwarmError):
    """A bound was hit."""


class DeadlineExceeded(LimitExceeded):
    """A wait for a task ran past its timeout."""


class RuleBudgetExceeded(LimitExceeded):
    """A specialist's deterministic finish or check step ran past its time budget on an input."""
