"""Drive one worker step over real Redis: publish a step request, wait for its result."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from specialists.cascade import Cascade
from specialists.worker import Worker
from swarm import names
from swarm.bus import PAYLOAD_FIELD, Bus
from swarm.distill.teacher import LabelCache, Teacher, cache_path
from swarm.messages import Envelope, StepRequest, StepResult, StepSpec, envelope
from swarm.serving.modelclient import ModelClient
from swarm.settings import Settings


async def run_step(
    redis: Redis,
    settings: Settings,
    specialist: str,
    step_input: dict[str, Any],
    task: str = "t1",
    *,
    traceparent: str | None = None,
) -> StepResult:
    """Publish one step request, run a worker until its result appears, return the result."""
    async with ModelClient(settings, retries=0) as client:
        worker = Worker(
            redis,
            settings,
            client,
            specialists=[specialist],
            base_model="base",
            cascade=cascade_for(redis, settings),
        )
        runner = asyncio.create_task(worker.run())
        request = StepRequest(
            step=StepSpec(id="s1", specialist=specialist), input=step_input, task_input=step_input
        )
        await Bus(redis, settings=settings).publish(
            names.steps_stream(specialist),
            envelope(task, request).model_copy(update={"traceparent": traceparent}),
        )
        try:
            for _ in range(1200):
                entries = await redis.xrange(names.RESULTS_STREAM)
                if entries:
                    body = Envelope.decode(entries[0][1][PAYLOAD_FIELD.encode()]).body
                    assert isinstance(body, StepResult)
                    return body
                await asyncio.sleep(0.1)
            raise AssertionError("no step result")
        finally:
            worker.stop()
            await runner


def cascade_for(redis: Redis, settings: Settings) -> Cascade:
    teacher = (
        Teacher.from_settings(settings, cache=LabelCache(cache_path(settings)))
        if settings.teacher_url
        else None
    )
    if teacher is not None:
        teacher.backoff_s = 0.05
    return Cascade(redis, settings, teacher)
