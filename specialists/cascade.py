"""The cascade: a step goes to the teacher only when its specialist is unsure.

The manifest's ``escalation`` block (:class:`swarm.manifest.Escalation`) says when:

- ``max_input_chars``: the input is longer than the student was trained on (checked first, so
  the student is not even asked);
- ``min_confidence``: the student's answer is valid but its confidence, the geometric mean of
  its token probabilities under constrained decoding, is below the threshold
  (``swarm calibrate`` picks it);
- ``on_invalid_output``: the student's output stays invalid after the bounded retries.

The teacher answers with the same output schema and the same checks. Every escalation, with the
input and the teacher's output, goes to a bounded Redis stream per specialist, the flywheel that
``swarm distill --from-escalations`` retrains on. With no teacher configured nothing escalates;
the step fails with the student's reason and says so.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from swarm import names
from swarm.connections import RedisClient
from swarm.distill.dataset import Example
from swarm.distill.teacher import Teacher
from swarm.errors import ConfigurationError, InvalidOutput, ModelUnavailable
from swarm.manifest import Manifest
from swarm.messages import EscalationEntry, utcnow
from swarm.serving.prompting import render_messages
from swarm.settings import Settings

__all__ = ["Cascade", "Escalated", "read_escalations"]


@dataclass(frozen=True)
class Escalated:
    """The teacher's answer to an escalated step, or why there is none."""

    output: dict[str, Any] | None
    error: str | None
    cost_usd: float
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Cascade:
    """Escalates steps to the teacher and records each escalation for retraining."""

    def __init__(self, redis: RedisClient, settings: Settings, teacher: Teacher | None) -> None:
        self.redis = redis
        self.settings = settings
        self.teacher = teacher

    async def escalate(
        self,
        manifest: Manifest,
        step_input: dict[str, Any],
        *,
        reason: str,
        deadline: datetime | None,
        task_id: str,
        step_id: str,
        student_output: Any = None,
        check: Callable[[dict[str, Any], Any], Awaitable[str | None]] | None = None,
    ) -> Escalated:
        """Ask the teacher (with retries, within the deadline) and keep the escalation."""
        if self.teacher is None:
            return Escalated(
                None, f"{reason}; no teacher configured (SWARM_TEACHER_URL), so not escalated", 0.0
            )
        spent_key = names.teacher_spend_key(utcnow().strftime("%Y-%m-%d"))
        cap = self.settings.teacher_daily_usd
        if cap > 0 and float(await self.redis.get(spent_key) or 0) >= cap:
            return Escalated(
                None,
                f"{reason}; not escalated: the teacher's daily budget of ${cap:g} is spent "
                "(SWARM_TEACHER_DAILY_USD)",
                0.0,
            )
        # The teacher sees the full prompt, few-shot examples included: its best shot.
        messages = render_messages(manifest, step_input)
        remaining = None if deadline is None else (deadline - utcnow()).total_seconds()
        before = self.teacher.stats.cost_usd
        try:
            label = await self.teacher.label(
                messages,
                manifest.output_schema,
                max_tokens=manifest.decoding.max_tokens,
                deadline=None if remaining is None else time.monotonic() + remaining,
            )
        except InvalidOutput as exc:
            spent = self.teacher.stats.cost_usd - before
            await self._spend(spent_key, spent)
            return Escalated(None, f"{reason}; the teacher's answer was invalid too: {exc}", spent)
        except (ModelUnavailable, ConfigurationError) as exc:
            return Escalated(None, f"{reason}; escalation failed: {exc}", 0.0)
        await self._spend(spent_key, label.cost_usd)
        problem = await check(step_input, label.output) if check is not None else None
        if problem is not None:
            return Escalated(None, f"{reason}; the teacher's answer failed the checks: {problem}",
                             label.cost_usd)  # fmt: skip
        await self.record(manifest, step_input, label.output, reason, task_id, step_id,
                          student_output)  # fmt: skip
        return Escalated(
            label.output, None, label.cost_usd, label.prompt_tokens, label.completion_tokens
        )

    async def _spend(self, key: str, usd: float) -> None:
        """Add ``usd`` to the day's teacher spend, which every worker reads before escalating."""
        if usd > 0:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incrbyfloat(key, usd)
                pipe.expire(key, 3 * 86_400)
                await pipe.execute()

    async def record(
        self,
        manifest: Manifest,
        step_input: dict[str, Any],
        output: dict[str, Any],
        reason: str,
        task_id: str,
        step_id: str,
        student_output: Any,
    ) -> None:
        entry = EscalationEntry(
            input=step_input,
            output=output,
            reason=reason,
            student_output=student_output,
            task_id=task_id,
            step_id=step_id,
            specialist_version=manifest.version,
        )
        await self.redis.xadd(
            names.escalations_stream(manifest.name),
            {"data": entry.model_dump_json()},
            maxlen=self.settings.escalation_retention,
            approximate=True,
        )


async def read_escalations(redis: RedisClient, specialist: str) -> list[Example]:
    """Every kept escalation of ``specialist`` as a labelled example, oldest first."""
    examples = []
    entries: Any = await redis.xrange(names.escalations_stream(specialist))
    for _id, fields in entries or []:
        entry = EscalationEntry.model_validate_json(fields.get(b"data") or fields.get("data"))
        meta = entry.model_dump(mode="json", include={"reason", "task_id", "step_id", "at"})
        examples.append(Example(entry.input, entry.output, {"escalation": meta}))
    return examples
