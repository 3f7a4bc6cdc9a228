"""Threshold calibration worked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.distill.calibration import Point, choose, plot, sweep, table
from swarm.serving.attempts import confidence

# Four answers: two sure and right, one unsure and wrong, one invalid (no confidence).
CONFIDENCES = [0.9, 0.8, 0.3, None]
SCORES = [1.0, 1.0, 0.0, 0.0]


def test_sweep_by_hand() -> None:
    points = sweep(CONFIDENCES, SCORES)
    assert [(p.threshold, p.escalation_rate, p.quality) for p in points[:4]] == [
        (0.0, 0.25, 0.75),  # only the invalid answer escalates
        (0.3, 0.25, 0.75),
        (0.8, 0.5, 1.0),  # the unsure wrong one goes to the teacher too
        (0.9, 0.75, 1.0),
    ]
    assert points[-1].escalation_rate == 1.0 and points[-1].threshold > 1.0


def test_choose_takes_the_least_escalation_that_reaches_the_target() -> None:
    points = sweep(CONFIDENCES, SCORES)
    assert choose(points, 0.75) == Point(0.0, 0.25, 0.75)
    assert choose(points, 0.9) == Point(0.8, 0.5, 1.0)
    assert choose(sweep([0.5], [0.0], teacher_score=0.5), 0.9) is None


def test_confidence_is_the_geometric_mean_probability() -> None:
    assert confidence([-0.5, -1.5]) == pytest.approx(0.3679, abs=1e-4)
    assert confidence([]) is None


def test_table_marks_the_choice_and_plot_writes_a_png(tmp_path: Path) -> None:
    points = sweep(CONFIDENCES, SCORES)
    chosen = choose(points, 0.9)
    text = table(points, chosen)
    assert "| 0.8000 **chosen** | 50.0% | 1.000 |" in text
    path = plot(points, chosen, 0.9, tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
