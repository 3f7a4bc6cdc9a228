"""One step answered by the model: call, finish and check, retry. The one loop that both the
worker and ``swarm eval`` (so ``swarm calibrate`` and ``bench/cascade.py`` too) answer with, so
the quality figures measure what serving does.

Each attempt asks the model under the output schema (constrained decoding), at the manifest's
temperature first and sampling after (:func:`attempt_temperature`), then hands the parsed answer
to ``apply``: the specialist's finish step and checks, which return the finished output and the
problem they found (None: valid). An answer that is not valid JSON for the schema, or that
``apply`` finds a problem with, is asked again, up to ``retries`` more times. ``apply`` raises
:class:`Stop` when asking again cannot help (a rule ran past its time budget); ``on_error`` says
what another error of the model server means: try again, or stop.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from swarm.errors import InvalidOutput, ModelBehaviorError, SwarmError
from swarm.manifest import Decoding
from swarm.serving.modelclient import ModelClient
from swarm.tracing import span

OUTPUT_RETRIES = 2
"""Retries of an answer that came back invalid (schema or the specialist's checks)."""
RETRY_TEMPERATURE = 0.7
"""Invalid output at temperature 0 would repeat itself; retries sample instead."""


def attempt_temperature(temperature: float, attempt: int) -> float:
    """The temperature of answer ``attempt`` (from 1): as configured first, sampling after."""
    return temperature if attempt == 1 else max(temperature, RETRY_TEMPERATURE)


def confidence(logprobs: Sequence[float] | None) -> float | None:
    """Geometric-mean token probability of an answer; None when no logprobs came back."""
    if not logprobs:
        return None
    return math.exp(sum(logprobs) / len(logprobs))


Apply = Callable[[Any], Awaitable[tuple[Any, str | None]]]
"""The specialist's rules on one parsed answer: (finished output, problem or None)."""


class Stop(Exception):
    """Raised by ``apply`` to end the attempts now: the same request would fail again."""


@dataclass(frozen=True)
class Verdict:
    """What ``on_error`` makes of a model-server error: retry or not, and what to report."""

    retry: bool
    error: str


@dataclass
class Attempts:
    """How a step's attempts went."""

    output: Any = None
    """The finished, checked output; None when no attempt was valid."""
    model_output: Any = None
    """The model's own parsed answer that was kept, before the finish step."""
    error: str | None = None
    """Why the last attempt failed; None once one is valid."""
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    """The model calls' latency, summed over the attempts."""
    confidence: float | None = None
    """Of the kept answer, from its token logprobs (when asked for)."""
    stopped: bool = False
    """Ended before its retries ran out (by :class:`Stop` or an error ``on_error`` stops on)."""

    @property
    def valid(self) -> bool:
        return self.error is None and self.attempts > 0


async def attempt(
    client: ModelClient,
    model: str,
    messages: Sequence[dict[str, str]],
    *,
    output_schema: dict[str, Any],
    decoding: Decoding,
    apply: Apply,
    retries: int = 0,
    logprobs: bool = False,
    timeout_s: Callable[[], float | None] | None = None,
    on_error: Callable[[SwarmError], Verdict] | None = None,
) -> Attempts:
    """Answer one step; see the module's docstring. Without ``on_error``, a model-server
    error other than an invalid answer is raised to the caller."""
    done = Attempts()
    base_temperature = decoding.temperature
    for number in range(1, max(0, retries) + 2):
        done.attempts = number
        try:
            with span("model.chat", {"gen_ai.request.model": model, "swarm.attempt": number}):
                completion = await client.chat(
                    model,
                    list(messages),
                    output_schema=output_schema,
                    temperature=attempt_temperature(base_temperature, number),
                    max_tokens=decoding.max_tokens,
                    top_p=decoding.top_p,
                    # Each attempt its own seed: a retry that sampled the same tokens again
                    # would be no retry.
                    seed=None if decoding.seed is None else decoding.seed + number - 1,
                    logprobs=logprobs,
                    timeout_s=timeout_s() if timeout_s is not None else None,
                )
        except (InvalidOutput, ModelBehaviorError) as exc:
            done.error = f"invalid output: {exc}"
            continue
        except SwarmError as exc:
            if on_error is None:
                raise
            verdict = on_error(exc)
            done.error = verdict.error
            if verdict.retry:
                continue
            done.stopped = True
            return done
        done.prompt_tokens += completion.usage.prompt_tokens
        done.completion_tokens += completion.usage.completion_tokens
        done.latency_ms += completion.latency_ms
        try:
            output, problem = await apply(completion.json)
        except Stop as exc:
            done.error, done.stopped = str(exc), True
            return done
        if problem is None:
            done.output, done.model_output, done.error = output, completion.json, None
            done.confidence = confidence(completion.logprobs)
            return done
        done.error = f"invalid output after {number} attempt(s): {problem}"
    return done
