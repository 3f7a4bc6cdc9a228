"""Picking a specialist's confidence threshold: the least escalation that keeps quality >= Q.

In the style of FrugalGPT and RouteLLM: score the student on labelled data, note each answer's
confidence (geometric-mean token probability), and sweep the threshold. Below it, a step goes to
the teacher, whose answer is taken to score ``teacher_score`` (1.0 by default, since the labels
are the teacher's). Each threshold gives an escalation rate and a cascade quality; the chosen
one is the lowest escalation rate whose quality reaches the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swarm.distill.evaluation import answer
from swarm.manifest import Manifest


@dataclass(frozen=True)
class Point:
    threshold: float
    escalation_rate: float
    quality: float


def sweep(
    confidences: Sequence[float | None],
    student_scores: Sequence[float],
    *,
    teacher_score: float = 1.0,
) -> list[Point]:
    """Quality and escalation rate at every distinct threshold, from 0 (never) to above 1.

    An answer without a confidence (invalid output) always escalates.
    """
    n = len(student_scores)
    if n == 0 or len(confidences) != n:
        raise ValueError("need one confidence per scored example")
    known = sorted({c for c in confidences if c is not None})
    thresholds = [0.0, *known, math.nextafter(1.0, 2.0)]
    points = []
    for threshold in thresholds:
        escalated = [c is None or c < threshold for c in confidences]
        quality = sum(
            teacher_score if up else score
            for up, score in zip(escalated, student_scores, strict=True)
        )
        points.append(Point(threshold, sum(escalated) / n, quality / n))
    return points


def choose(points: Sequence[Point], target_quality: float) -> Point | None:
    """The lowest-escalation point with quality >= target; None if even all-teacher misses."""
    good = [p for p in points if p.quality >= target_quality - 1e-12]
    return min(good, key=lambda p: (p.escalation_rate, p.threshold)) if good else None


def table(points: Sequence[Point], chosen: Point | None, *, rows: int = 12) -> str:
    """A markdown table of the curve, thinned to about ``rows`` rows, the chosen one marked."""
    step = max(1, len(points) // rows)
    shown = list(points[::step])
    if points[-1] not in shown:
        shown.append(points[-1])
    if chosen is not None and chosen not in shown:
        shown = sorted([*shown, chosen], key=lambda p: p.threshold)
    lines = ["| threshold | escalation rate | quality |", "|---|---|---|"]
    for p in shown:
        mark = " **chosen**" if p == chosen else ""
        lines.append(f"| {p.threshold:.4f}{mark} | {p.escalation_rate:.1%} | {p.quality:.3f} |")
    return "\n".join(lines) + "\n"


def plot(points: Sequence[Point], chosen: Point | None, target: float, path: Path) -> Path:
    """The quality / escalation-rate curve as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    axes.plot([p.escalation_rate for p in points], [p.quality for p in points], marker=".")
    axes.axhline(target, linestyle="--", color="grey", label=f"target quality {target:g}")
    if chosen is not None:
        axes.scatter([chosen.escalation_rate], [chosen.quality], color="red", zorder=3,
                     label=f"threshold {chosen.threshold:.3f}")  # fmt: skip
    axes.set_xlabel("escalation rate (share of steps sent to the teacher)")
    axes.set_ylabel("cascade quality")
    axes.set_xlim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def report(points: Sequence[Point], chosen: Point | None, target: float) -> dict[str, Any]:
    return {
        "target_quality": target,
        "chosen": asdict(chosen) if chosen else None,
        "curve": [asdict(p) for p in points],
    }


@dataclass(frozen=True)
class Calibration:
    points: list[Point]
    chosen: Point | None
    target_quality: float
    student_quality: float
    examples: int


async def calibrate(
    client: Any,
    model: str,
    manifest: Manifest,
    examples: Sequence[Any],
    scorer: Any,
    *,
    target_quality: float,
    concurrency: int = 16,
    check: Any = None,
    retries: int = 0,
    finish: Any = None,
) -> Calibration:
    """Score ``model`` example by example with confidences, then sweep the threshold.

    Pass the specialist's ``finish``, ``check`` and the worker's ``retries`` to answer as the
    worker does: an answer that fails the check is retried, and one that never passes escalates
    whatever the threshold.
    """
    answers = await answer(
        client, model, manifest, examples, concurrency=concurrency, logprobs=True,
        check=check, retries=retries, finish=finish,
    )  # fmt: skip
    scores = [
        float(scorer([example], [a.output])["score"])
        for example, a in zip(examples, answers, strict=True)
    ]
    points = sweep([a.confidence for a in answers], scores)
    return Calibration(
        points=points,
        chosen=choose(points, target_quality),
        target_quality=target_quality,
        student_quality=sum(scores) / len(scores) if scores else 0.0,
        examples=len(examples),
    )
