"""How the built-in ``pii`` specialist is scored."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from specialists.builtin.scoring import Prediction, _matches, _pairs
from swarm.distill.dataset import Example


def pii_scores(examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
    """Span precision/recall/F1 over (text, type), and the leak rate.

    The leak rate is the share of gold PII characters still readable in the predicted redacted
    text. A missing prediction leaks everything: the conservative reading for a privacy filter.
    """
    gold_chars = leaked_chars = 0
    for example, prediction in zip(examples, predictions, strict=True):
        redacted = (
            str(prediction.get("redacted_text", "")) if prediction else str(example.input["text"])
        )
        gold = _pairs((example.output or {}).get("spans"))
        by_value = Counter(text for (text, _type), n in gold.items() for _ in range(n))
        for value, count in by_value.items():
            gold_chars += len(value) * count
            leaked_chars += len(value) * min(count, redacted.count(value))
    scores = _matches(examples, predictions, "spans")
    leak_rate = leaked_chars / gold_chars if gold_chars else 0.0
    return {"score": scores["f1"], **scores, "leak_rate": round(leak_rate, 4)}
