"""Task metrics of the built-in specialists, each over a list of gold examples and predictions.

A prediction is the specialist's parsed output, or None where it gave none that validated. Each
scorer returns its headline figure as ``score`` beside the details. Counts are micro-averaged:
every span or entity in the data weighs the same, whichever example it sits in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from swarm.distill.dataset import Example

Prediction = dict[str, Any] | None


def _prf(true_positive: int, predicted: int, gold: int) -> dict[str, float]:
    precision = true_positive / predicted if predicted else (1.0 if gold == 0 else 0.0)
    recall = true_positive / gold if gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def _pairs(items: Any) -> Counter[tuple[str, str]]:
    if not isinstance(items, list):
        return Counter()
    return Counter(
        (str(item.get("text", "")), str(item.get("type", "")))
        for item in items
        if isinstance(item, dict)
    )


def _matches(
    examples: Sequence[Example], predictions: Sequence[Prediction], key: str
) -> dict[str, float]:
    """Micro precision/recall/F1 of the (text, type) items under ``key``."""
    tp = predicted = gold_count = 0
    for example, prediction in zip(examples, predictions, strict=True):
        gold = _pairs((example.output or {}).get(key))
        found = _pairs((prediction or {}).get(key))
        tp += sum((gold & found).values())
        predicted += sum(found.values())
        gold_count += sum(gold.values())
    return _prf(tp, predicted, gold_count)
