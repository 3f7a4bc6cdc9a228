"""The worker: runs one step at a time per message for one or more specialists.

For each step request it renders the specialist's prompt from its manifest, calls the model
(the specialist's LoRA on vLLM, or the base model for a prompt-only specialist) with the output
JSON schema, applies a built-in specialist's deterministic repairs (``pii`` rebuilds its
redacted text from the spans), validates the output against the schema and the specialist's
own checks, retries a bounded number of times on invalid output, and publishes the step
result. Every handoff is guarded: an output that fails validation never reaches the next
specialist.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from specialists.cascade import Cascade, Escalated
from specialists.rules import InputTooLong, RuleRunner
from swarm import names
from swarm.accounting import record_step
from swarm.bus import Bus
from swarm.catalog import CatalogCache, SpecialistRecord
from swarm.connections import OUTAGE_ERRORS, Outage, RedisClient
from swarm.consumer import Consumer, Delivery, Reject
from swarm.distill.teacher import LabelCache, Teacher, cache_path
from swarm.errors import (
    InfrastructureError,
    RuleBudgetExceeded,
    SwarmError,
    UnknownSpecialist,
)
from swarm.handoff import as_input
from swarm.logs import task_context
from swarm.messages import Envelope, StepRequest, StepResult, TokenUsage, utcnow
from swarm.serving.attempts import OUTPUT_RETRIES, Stop, Verdict, attempt
from swarm.serving.costs import all_teacher_cost_usd, local_cost_usd
from swarm.serving.modelclient import ModelClient
from swarm.serving.prompting import render_messages
from swarm.settings import Settings
from swarm.tracing import current_traceparent, span

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.25


def result_id(task_id: str, step_id: str, attempt: int) -> str:
    """A step result's envelope id: the same step attempt always publishes the same id."""
    return hashlib.sha256(f"result:{task_id}:{step_id}:{attempt}".encode()).hexdigest()[:32]


class Stopped(enum.Enum):
    """Why a step was stopped before it finished: neither is the specialist's doing, so
    neither is escalated to the teacher."""

    CANCELED = "canceled"
    DEADLINE = "deadline exceeded"


@dataclass
class StepOutcome:
    output: Any = None
    valid: bool = False
    error: str | None = None
    attempts: int = 0
    tokens: TokenUsage | None = None
    escalated: bool = False
    escalation_reason: str | None = None
    cost_usd: float = 0.0
    all_teacher_cost_usd: float = 0.0
    stopped: Stopped | None = None

    @classmethod
    def stop(cls, why: Stopped) -> StepOutcome:
        return cls(error=why.value, stopped=why)


class Worker:
    """Consumes step requests for some specialists (or all) and publishes step results."""

    def __init__(
        self,
        redis: RedisClient,
        settings: Settings,
        model: ModelClient,
        *,
        specialists: Sequence[str] | None = None,
        base_model: str,
        max_output_retries: int = OUTPUT_RETRIES,
        catalog_poll_s: float = 2.0,
        cascade: Cascade | None = None,
        rules: RuleRunner | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.model = model
        self.fixed = list(specialists) if specialists else None
        self.base_model = base_model
        self.max_output_retries = max_output_retries
        self.catalog_poll_s = catalog_poll_s
        self.cascade = cascade
        self.rules = rules or RuleRunner(
            budget_s=settings.rules_budget_s,
            processes=settings.rules_processes,
            max_input_chars=settings.max_input_chars,
        )
        self.bus = Bus(redis, settings=settings)
        self.catalog = CatalogCache(redis)
        self._consumer: Consumer | None = None
        self._stopping = asyncio.Event()

    async def _wanted_streams(self) -> list[str]:
        if self.fixed is not None:
            return [names.steps_stream(name) for name in self.fixed]
        return [names.steps_stream(name) for name in await self.catalog.fresh()]

    async def run(self) -> None:
        """Consume until ``stop()``; follows the catalog when serving every specialist."""
        streams: list[str] = []
        outage = Outage("worker")
        try:
            while not self._stopping.is_set():
                try:
                    wanted = sorted(await self._wanted_streams())
                    outage.over()
                except OUTAGE_ERRORS as exc:
                    # A Redis restart or failover: keep serving the streams already read, and
                    # look at the catalog again once Redis is back.
                    await outage.wait(exc)
                    continue
                if wanted != streams:
                    if self._consumer is not None:
                        await self._consumer.close()
                        self._consumer = None
                    streams = wanted
                    if streams:
                        self._consumer = Consumer.of(
                            self.bus, streams, names.WORKERS_GROUP, self.handle
                        )
                        self._consumer.start()
                        log.info("worker consuming %s", ", ".join(streams))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.catalog_poll_s)
        finally:
            if self._consumer is not None:
                await self._consumer.close()
            self.rules.close()

    def stop(self) -> None:
        self._stopping.set()

    async def handle(self, delivery: Delivery) -> None:
        """Bus handler: run one step and publish its result."""
        message = delivery.envelope
        request = message.body
        if not isinstance(request, StepRequest):
            raise Reject(f"workers take step.request messages, not {request.type}")
        step = request.step
        with (
            task_context(message.task_id, step.id),
            span(
                f"step {step.specialist}",
                {
                    "swarm.task_id": message.task_id,
                    "swarm.step_id": step.id,
                    "swarm.specialist": step.specialist,
                },
                parent=message.traceparent,
            ) as active,
        ):
            result = await self._step(message, request)
            active.set_attribute("swarm.escalated", result.escalated)
            active.set_attribute("swarm.valid", result.valid)

    async def _step(self, message: Envelope, request: StepRequest) -> StepResult:
        step = request.step
        started = time.perf_counter()
        record = await self.catalog.get(step.specialist)
        if record is None or not record.ready:
            why = "is not registered" if record is None else f"was rejected: {record.reason}"
            outcome = StepOutcome(error=f"specialist {step.specialist!r} {why}")
        elif await self.redis.exists(names.canceled_key(message.task_id)):
            outcome = StepOutcome.stop(Stopped.CANCELED)
        else:
            outcome = await self._run_cancellable(message.task_id, record, request)
            outcome = await self._cascade(message.task_id, record, request, outcome)
        result = StepResult(
            step_id=step.id,
            specialist=step.specialist,
            output=outcome.output,
            valid=outcome.valid,
            error=outcome.error,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            tokens=outcome.tokens or TokenUsage(),
            adapter=record.lora_name if record else None,
            adapter_version=record.version if record else None,
            attempts=outcome.attempts,
            escalated=outcome.escalated,
            escalation_reason=outcome.escalation_reason,
            cost_usd=round(outcome.cost_usd, 8),
            all_teacher_cost_usd=round(outcome.all_teacher_cost_usd, 8),
        )
        reply = Envelope(
            id=result_id(message.task_id, step.id, message.attempt),
            task_id=message.task_id,
            trace_id=message.trace_id,
            traceparent=current_traceparent() or message.traceparent,
            attempt=message.attempt,
            body=result,
        )
        # One round trip: a result published before (this delivery is a redelivery of a step
        # whose worker died before acking) is neither sent nor counted again.
        await record_step(
            self.redis,
            message.task_id,
            result,
            publish=self.bus.outgoing(names.RESULTS_STREAM, reply),
        )
        return result

    async def _run_cancellable(
        self, task_id: str, record: SpecialistRecord, request: StepRequest
    ) -> StepOutcome:
        """Run the step, but give up as soon as the task is canceled or its deadline passes."""
        work = asyncio.create_task(self._run_step(record, request))
        try:
            while True:
                done, _ = await asyncio.wait({work}, timeout=CANCEL_POLL_S)
                if done:
                    return work.result()
                if await self.redis.exists(names.canceled_key(task_id)):
                    work.cancel()
                    return StepOutcome.stop(Stopped.CANCELED)
                if _past(request.deadline):
                    work.cancel()
                    return StepOutcome.stop(Stopped.DEADLINE)
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work

    async def _run_step(self, record: SpecialistRecord, request: StepRequest) -> StepOutcome:
        manifest = record.manifest
        outcome = StepOutcome(tokens=TokenUsage())
        if manifest is None:  # the registry publishes none such; a hand-edited catalog might
            outcome.error = f"specialist {record.name!r} has no manifest in the catalog"
            return outcome
        step_input = request.input or as_input(request.task_input)
        messages = render_messages(manifest, step_input)
        model = record.lora_name or self.base_model
        policy = manifest.escalation
        try:
            self.rules.check_length(record.name, step_input)  # before the model is asked
        except InputTooLong as exc:
            outcome.error = str(exc)
            return outcome
        outcome.escalation_reason = policy.before(step_input)
        if outcome.escalation_reason is not None:
            return outcome  # straight to the teacher: the student never saw this kind of input
        deadline_hit = False

        def on_error(exc: SwarmError) -> Verdict:
            nonlocal deadline_hit
            if isinstance(exc, UnknownSpecialist):
                # vLLM answers 404 for an adapter between its restart and the registry's reload.
                return Verdict(retry=True, error=f"model unavailable: {exc}")
            if isinstance(exc, InfrastructureError):
                deadline_hit = _past(request.deadline)
                why = Stopped.DEADLINE.value if deadline_hit else f"model unavailable: {exc}"
                return Verdict(retry=False, error=why)
            # A 400 (an input longer than the model's context, say): the same request would
            # be refused again, so the step fails with the reason, once, not redelivered.
            return Verdict(retry=False, error=str(exc))

        async def apply(answer: Any) -> tuple[Any, str | None]:
            try:
                return await self.rules.apply(record.name, record.output_schema, step_input, answer)
            except (RuleBudgetExceeded, RuntimeError) as exc:
                # The same input would run past the budget again: no retry, no redelivery.
                raise Stop(str(exc)) from exc

        done = await attempt(
            self.model, model, messages, output_schema=record.output_schema,
            decoding=manifest.decoding, apply=apply, retries=self.max_output_retries,
            logprobs=policy.min_confidence is not None,
            timeout_s=lambda: _remaining(request.deadline), on_error=on_error,
        )  # fmt: skip
        outcome.attempts, outcome.error = done.attempts, done.error
        outcome.tokens = TokenUsage(prompt=done.prompt_tokens, completion=done.completion_tokens)
        if deadline_hit:
            outcome.stopped = Stopped.DEADLINE
        if done.valid:
            outcome.output, outcome.valid = done.output, True
            outcome.escalation_reason = policy.after_valid(done.confidence)
            return outcome
        invalid = (outcome.error or "").startswith("invalid output")
        if not outcome.valid and policy.on_invalid_output and invalid:
            outcome.escalation_reason = outcome.error
        return outcome

    async def _cascade(
        self, task_id: str, record: SpecialistRecord, request: StepRequest, outcome: StepOutcome
    ) -> StepOutcome:
        """Price the step, and hand it to the teacher when the student's outcome asks for it."""
        tokens = outcome.tokens or TokenUsage()
        outcome.cost_usd = local_cost_usd(self.settings, tokens.prompt, tokens.completion)
        outcome.all_teacher_cost_usd = all_teacher_cost_usd(
            self.settings, tokens.prompt, tokens.completion
        )
        reason = outcome.escalation_reason
        if reason is None or outcome.stopped is not None:
            outcome.escalation_reason = None
            return outcome
        if self.cascade is None or self.cascade.teacher is None:
            outcome.escalation_reason = None
            if not outcome.valid:
                outcome.error = (
                    f"{outcome.error or reason}; no teacher configured (SWARM_TEACHER_URL), "
                    "so the step was not escalated"
                )
            return outcome
        step_input = request.input or as_input(request.task_input)
        with span("teacher.escalate", {"swarm.escalation_reason": reason}):
            answer = await self._escalate(record, request, step_input, reason, outcome, task_id)
        outcome.cost_usd += answer.cost_usd
        if answer.prompt_tokens or answer.completion_tokens:
            outcome.all_teacher_cost_usd = all_teacher_cost_usd(
                self.settings, answer.prompt_tokens, answer.completion_tokens
            )
        if answer.output is not None:
            outcome.output, outcome.valid, outcome.error = answer.output, True, None
            outcome.escalated = True
        elif outcome.valid:
            # A sure-enough answer from the teacher never came; the student's valid one stands.
            outcome.escalation_reason = f"not escalated: {answer.error}"
        else:
            outcome.error = answer.error
        return outcome

    async def _check(
        self, record: SpecialistRecord, step_input: dict[str, Any], output: Any
    ) -> str | None:
        """None if a teacher's ``output`` may be handed on, else why not (within the budget)."""
        try:
            _, problem = await self.rules.apply(
                record.name, record.output_schema, step_input, output, finish=False
            )
        except (RuleBudgetExceeded, RuntimeError) as exc:
            return str(exc)
        return problem

    async def _escalate(
        self,
        record: SpecialistRecord,
        request: StepRequest,
        step_input: dict[str, Any],
        reason: str,
        outcome: StepOutcome,
        task_id: str,
    ) -> Escalated:
        assert self.cascade is not None and record.manifest is not None
        return await self.cascade.escalate(
            record.manifest,
            step_input,
            reason=reason,
            deadline=request.deadline,
            task_id=task_id,
            step_id=request.step.id,
            student_output=outcome.output,
            check=functools.partial(self._check, record),
        )


def _past(deadline: datetime | None) -> bool:
    return deadline is not None and utcnow() >= deadline


def _remaining(deadline: datetime | None) -> float | None:
    if deadline is None:
        return None
    return max(0.1, (deadline - utcnow()).total_seconds())


async def run_worker(settings: Settings, specialists: Sequence[str] | None = None) -> None:
    """``swarm worker``: serve step requests until SIGINT or SIGTERM, then drain and exit."""
    from swarm.connections import connect_when_up
    from swarm.eventloop import run_service
    from swarm.serving.basemodel import served_base_name

    redis = await connect_when_up(
        settings.redis_url, "worker", max_connections=settings.redis_max_connections
    )
    client = ModelClient(settings)
    teacher = (
        Teacher.from_settings(settings, cache=LabelCache(cache_path(settings)))
        if settings.teacher_url
        else None
    )
    worker = Worker(
        redis,
        settings,
        client,
        specialists=specialists,
        base_model=served_base_name(settings),
        cascade=Cascade(redis, settings, teacher),
    )
    await run_service(worker, client, teacher, redis)
