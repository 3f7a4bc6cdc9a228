"""Scoring a model (a LoRA or the base) on labelled examples, through the serving path.

Predictions come from an OpenAI-compatible server (vLLM) with the same rendered prompt and the
same JSON-schema-constrained decoding the worker uses, so an evaluation measures what
production will see. Each report carries the specialist's task metric, the share of answers
that were valid JSON of the schema, and latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swarm.distill.dataset import Example
from swarm.manifest import Check, Finish, Manifest, Specialist
from swarm.serving.attempts import attempt
from swarm.serving.basemodel import resolve_base_model
from swarm.serving.modelclient import ModelClient
from swarm.serving.modelserver import ModelServer
from swarm.serving.prompting import render_messages
from swarm.settings import Settings

Prediction = dict[str, Any] | None
Say = Callable[[str], None]
EVAL_TIMEOUT_S = 1800.0
"""How long one request of an evaluation may take: a whole test set is queued at once."""
Scorer = Callable[[Sequence[Example], Sequence[Prediction]], dict[str, Any]]


@dataclass(frozen=True)
class EvalReport:
    model: str
    metric: str
    score: float
    metrics: dict[str, Any]
    examples: int
    json_validity: float
    """Share of answers that parsed as JSON and matched the output schema."""
    check_pass: float
    """Share of answers that also passed the specialist's own checks."""
    latency_ms_p50: float
    latency_ms_p95: float
    model_only: dict[str, Any] | None = None
    """For a specialist with a finish step: the metrics of the model's answers before it."""
    interval: tuple[float, float] | None = None
    """The score's 95% bootstrap interval (:func:`bootstrap_interval`)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


BOOTSTRAP_RESAMPLES = 1000


def bootstrap_interval(
    examples: Sequence[Example],
    predictions: Sequence[Prediction],
    scorer: Scorer,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """The 95% percentile bootstrap interval of the scorer's ``score``: the examples drawn with
    replacement ``resamples`` times, each draw scored whole, so a micro-averaged F1 is resampled
    as it is computed. None for fewer than two examples."""
    n = len(examples)
    if n < 2:
        return None
    rng = random.Random(seed)
    scores = []
    for _ in range(resamples):
        drawn = [rng.randrange(n) for _ in range(n)]
        scores.append(
            float(scorer([examples[i] for i in drawn], [predictions[i] for i in drawn])["score"])
        )
    scores.sort()
    low = scores[int(0.025 * (resamples - 1))]
    high = scores[round(0.975 * (resamples - 1))]
    return round(low, 4), round(high, 4)


def exact_match(examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
    """The scorer for specialists without their own: the whole output must equal the gold."""
    hits = sum(
        1
        for example, prediction in zip(examples, predictions, strict=True)
        if prediction is not None and _canonical(prediction) == _canonical(example.output)
    )
    accuracy = hits / len(examples) if examples else 0.0
    return {"score": round(accuracy, 4), "exact_match": round(accuracy, 4)}


def scorer_of(specialist: Specialist) -> Scorer:
    """The specialist's own scorer, or :func:`exact_match` for one without."""
    return specialist.scorer or exact_match


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class Answer:
    """A model's answer to one example, after any retries."""

    output: Prediction
    """The parsed output, finished; None where every attempt was invalid or failed the check."""
    latency_ms: float
    """Summed over the attempts."""
    confidence: float | None
    """Of the answer kept (from token logprobs, when asked for); None where there is none."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Both summed over the attempts: what the answer cost."""
    model_output: Prediction = None
    """The model's own output, before the specialist's finish step."""


async def answer(
    client: ModelClient,
    model: str,
    manifest: Manifest,
    examples: Sequence[Example],
    *,
    concurrency: int = 8,
    on_done: Callable[[], None] | None = None,
    logprobs: bool = False,
    check: Check | None = None,
    retries: int = 0,
    finish: Finish | None = None,
) -> list[Answer]:
    """Each example answered with the serving prompt and constrained decoding, in order.

    ``finish`` is the specialist's repair of a parsed output, applied before the check as the
    worker applies it. With ``check`` and ``retries``, an answer that is invalid or fails the
    check is asked again, sampling, by the worker's own loop
    (:func:`swarm.serving.attempts.attempt`); one that never passes has no output, and the
    cascade escalates it.
    """
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(example: Example) -> Answer:
        async def apply(raw: Any) -> tuple[Any, str | None]:
            if not isinstance(raw, dict):
                return None, "not a JSON object"
            output = finish(example.input, raw) if finish is not None else raw
            return output, check(example.input, output) if check is not None else None

        async with slots:
            try:
                done = await attempt(
                    client, model, render_messages(manifest, example.input),
                    output_schema=manifest.output_schema, decoding=manifest.decoding, apply=apply,
                    retries=retries, logprobs=logprobs,
                )  # fmt: skip
            finally:
                if on_done is not None:
                    on_done()
        return Answer(
            done.output, done.latency_ms, done.confidence, done.prompt_tokens,
            done.completion_tokens, done.model_output if done.valid else None,
        )  # fmt: skip

    return list(await asyncio.gather(*(one(e) for e in examples)))


async def evaluate(
    client: ModelClient,
    model: str,
    manifest: Manifest,
    examples: Sequence[Example],
    scorer: Scorer,
    *,
    metric: str,
    check: Check | None = None,
    finish: Finish | None = None,
    concurrency: int = 8,
    on_done: Callable[[], None] | None = None,
) -> EvalReport:
    """Predict every example with ``model`` and score the predictions against the gold.

    The score is of the finished answers, what the specialist returns; with a ``finish``, the
    report also scores the model's answers before it (``model_only``).
    """
    answers = await answer(
        client, model, manifest, examples, concurrency=concurrency, on_done=on_done,
        finish=finish,
    )  # fmt: skip
    predictions, latencies = [a.output for a in answers], [a.latency_ms for a in answers]
    metrics = scorer(examples, predictions)
    model_only = scorer(examples, [a.model_output for a in answers]) if finish else None
    valid = [p for p in predictions if p is not None]
    passing = sum(
        1
        for example, prediction in zip(examples, predictions, strict=True)
        if prediction is not None and (check is None or check(example.input, prediction) is None)
    )
    timed = sorted(latency for latency in latencies if latency > 0) or [0.0]
    n = len(examples)
    return EvalReport(
        model=model,
        metric=metric,
        score=float(metrics["score"]),
        metrics=metrics,
        examples=n,
        json_validity=round(len(valid) / n, 4) if n else 0.0,
        check_pass=round(passing / n, 4) if n else 0.0,
        latency_ms_p50=round(statistics.median(timed), 1),
        latency_ms_p95=round(timed[min(len(timed) - 1, int(0.95 * len(timed)))], 1),
        model_only=model_only,
        interval=bootstrap_interval(examples, predictions, scorer),
    )


def markdown_table(reports: dict[str, EvalReport]) -> str:
    """The reports side by side, as the ``eval.md`` beside an adapter shows them."""
    lines = [
        "| model | " + " | ".join(reports) + " |",
        "|---|" + "---|" * len(reports),
    ]
    first = next(iter(reports.values()))
    rows: list[tuple[str, Callable[[EvalReport], str]]] = [
        (f"{first.metric} (score)", lambda r: f"{r.score:.3f}"),
        ("95% interval", _interval_cell),
        ("JSON validity", lambda r: f"{r.json_validity:.1%}"),
        ("passes checks", lambda r: f"{r.check_pass:.1%}"),
        ("latency p50 (ms)", lambda r: f"{r.latency_ms_p50:.0f}"),
        ("latency p95 (ms)", lambda r: f"{r.latency_ms_p95:.0f}"),
        ("examples", lambda r: str(r.examples)),
    ]
    extra = [
        k
        for k, v in first.metrics.items()
        if k not in ("score", first.metric) and isinstance(v, float)
    ]
    for key in extra:
        rows.insert(1, (key, _metric_cell(key)))
    if first.model_only is not None:
        rows.insert(1, (f"{first.metric}, model before finish", _model_only_cell))
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in reports.values()) + " |")
    return "\n".join(lines) + "\n"


def _interval_cell(report: EvalReport) -> str:
    return "n/a" if report.interval is None else "{:.3f}-{:.3f}".format(*report.interval)


def _model_only_cell(report: EvalReport) -> str:
    return f"{(report.model_only or {}).get('score', 0.0):.3f}"


def _metric_cell(key: str) -> Callable[[EvalReport], str]:
    def cell(report: EvalReport) -> str:
        return f"{report.metrics.get(key, 0.0):.3f}"

    return cell


@contextlib.contextmanager
def model_server(settings: Settings, say: Say) -> Iterator[str]:
    """The configured vLLM if it answers, else one started for the duration of the block.

    A running server must allow runtime LoRA loading and see this machine's paths (the one
    ``swarm serve-model`` starts does both).
    """
    url = settings.vllm_urls[0]

    async def healthy() -> bool:
        async with ModelClient(settings, base_url=url, retries=0) as client:
            return await client.health()

    if asyncio.run(healthy()):
        say(f"using vLLM at {url}")
        yield url
        return
    say(f"no vLLM at {url}; starting one (30-100 s on CPU)")
    with ModelServer(settings, model=resolve_base_model(settings, prepare=True)) as server:
        yield server.url


async def evaluate_models(
    settings: Settings,
    url: str,
    specialist: Specialist,
    examples: list[Example],
    runs: dict[str, tuple[str, Manifest]],
    *,
    adapters: dict[str, Path],
    concurrency: int = 16,
) -> dict[str, EvalReport]:
    """Evaluate each named (model, manifest) run; ``adapters`` are loaded first, then unloaded."""
    reports: dict[str, EvalReport] = {}
    # A whole test set is queued at once; on a CPU a request may wait minutes for its turn.
    timeout = max(settings.model_timeout_s, EVAL_TIMEOUT_S)
    async with ModelClient(settings, base_url=url, timeout_s=timeout) as client:
        for lora, path in adapters.items():
            await client.load_adapter(lora, str(path.resolve()))
        try:
            for name, (model, manifest) in runs.items():
                bar = progress_bar(len(examples), name)
                try:
                    reports[name] = await evaluate(
                        client, model, manifest, examples, scorer_of(specialist),
                        metric=specialist.metric, check=specialist.check,
                        finish=specialist.finish,
                        concurrency=concurrency, on_done=functools.partial(bar.update, 1),
                    )  # fmt: skip
                finally:
                    bar.close()
        finally:
            for lora in adapters:
                with contextlib.suppress(Exception):
                    await client.unload_adapter(lora)
    return reports


def progress_bar(total: int, what: str) -> Any:
    """A tqdm bar of examples, gone when closed."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="ex", leave=False)
