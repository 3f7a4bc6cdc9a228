"""Every Redis stream, consumer group and key name swarm uses, in one place.

All names live under the ``{swarm}:`` namespace. The braces are a Redis Cluster hash tag: Cluster
hashes only the first ``{...}`` of a key, so every swarm key, stream and counter lands in one hash
slot. That is what lets one Lua script or ``MULTI`` write a task's record, its event log, the fleet
counters and the step streams it publishes to, and one ``XREADGROUP`` read several streams, on a
Redis Cluster as on a single server (where the braces mean nothing). The price is that one swarm
deployment lives on one shard of a cluster; ``docs/scaling.md`` says what that means.
"""

from __future__ import annotations

PREFIX = "{swarm}"

# Streams
TASKS_STREAM = f"{PREFIX}:stream:tasks"
"""Task submissions and cancellations, consumed by orchestrators."""
RESULTS_STREAM = f"{PREFIX}:stream:results"
"""Step results, consumed by orchestrators."""
DEAD_LETTER_STREAM = f"{PREFIX}:stream:dead"
"""Messages that could not be handled, each with the reason and its delivery history."""
"""Inputs that a specialist escalated to the teacher, with the teacher's answer."""


def steps_stream(specialist: str) -> str:
    """Step requests for one specialist, consumed by its workers."""
    return f"{PREFIX}:stream:steps:{specialist}"


def task_events_stream(task_id: str) -> str:
    """The ordered event log of one task (replayed by the SSE endpoint)."""
    return f"{PREFIX}:events:{task_id}"


# Consumer groups
ORCHESTRATORS_GROUP = f"{PREFIX}:orchestrators"
WORKERS_GROUP = f"{PREFIX}:workers"


# Bus bookkeeping
def heartbeat_key(group: str, consumer: str) -> str:
    """Exists while a consumer is alive; it renews the key's TTL on every beat."""
    return f"{PREFIX}:hb:{_local(group)}:{consumer}"


def _local(name: str) -> str:
    """``name`` without the namespace, to nest one name in another."""
    return name.removeprefix(f"{PREFIX}:")


def published_key(stream: str, message_id: str) -> str:
    """Marks a message id as published to a stream, so a producer's retry has no second effect."""
    return f"{PREFIX}:published:{_local(stream)}:{message_id}"


def handled_key(stream: str, group: str, message_id: str) -> str:
    """Marks a message id as handled by a group, so a redelivery has no second effect."""
    return f"{PREFIX}:handled:{_local(stream)}:{_local(group)}:{message_id}"


def history_key(stream: str, entry_id: str) -> str:
    """The delivery history of one stream entry: who got it, when, and how it failed."""
    return f"{PREFIX}:history:{_local(stream)}:{entry_id}"


# Task state
def task_key(task_id: str) -> str:
    """Hash holding a task's state (``state``, ``reason``, ...)."""
    return f"{PREFIX}:task:{task_id}"


def task_index_key(owner: str) -> str:
    """Sorted set of one owner's task ids, scored by creation time: what ``GET /v1/tasks`` lists.
    Anonymous callers (no API keys configured) share the owner ``anonymous``."""
    return f"{PREFIX}:tasks-of:{owner}"


# Specialist registry
SPECIALISTS_KEY = f"{PREFIX}:specialists"
"""Hash: specialist name -> JSON record (version, status, manifest, reason)."""
SPECIALISTS_CHANNEL = f"{PREFIX}:specialists:changed"
"""Pub/sub channel announcing registry changes."""
SPECIALISTS_VERSION_KEY = f"{PREFIX}:specialists:version"
"""Counter bumped with every catalog write, so a cached copy knows when it is stale."""


def rate_key(owner: str, window: int) -> str:
    """Counts one API key owner's task submissions in one minute (``window``: epoch minutes)."""
    return f"{PREFIX}:rate:{owner}:{window}"


def idempotency_key(owner: str, key: str) -> str:
    """Maps a client's Idempotency-Key (per API key owner) to the task id it created."""
    return f"{PREFIX}:idem:{owner}:{key}"


def canceled_key(task_id: str) -> str:
    """Exists once a task is canceled or failed: the one way workers hear to drop its steps
    (they check it before a step and while it runs), for :data:`CANCELED_TTL_S`."""
    return f"{PREFIX}:canceled:{task_id}"


CANCELED_TTL_S = 86_400
"""How long the canceled marker stays: longer than any step runs."""


DEADLINES_KEY = f"{PREFIX}:deadlines"
"""Sorted set: task id scored by its deadline (epoch seconds), swept by orchestrators."""


# Cascade
def teacher_spend_key(day: str) -> str:
    """What the deployment spent on the teacher on ``day`` (UTC, ``YYYY-MM-DD``), in USD."""
    return f"{PREFIX}:teacher-spend:{day}"


def escalations_stream(specialist: str) -> str:
    """Stream of a specialist's escalations (input, teacher output, reason), for retraining."""
    return f"{PREFIX}:escalations:{specialist}"


ACCOUNTING_STREAM = f"{PREFIX}:stream:accounting"
"""One entry per finished step (specialist, cost, escalation, latency), for ``swarm report``."""
STATS_KEY = f"{PREFIX}:stats"
"""Hash of running totals per specialist (``<name>:<field>``), exported by /metrics."""
STEP_LATENCY_KEY = f"{PREFIX}:stats:step-latency-buckets"
"""Hash of step-latency counts per bucket (not cumulative), per specialist and adapter version."""
TASK_STATES_KEY = f"{PREFIX}:stats:task-states"
"""Hash: task state -> how many tasks entered it (every API and orchestrator writes it)."""
BUS_STATS_KEY = f"{PREFIX}:stats:bus"
"""Hash: ``reclaimed|<stream>`` and ``dead_lettered|<stream>`` -> messages, fleet-wide."""
