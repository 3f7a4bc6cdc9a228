"""How the built-in ``entities`` specialist is scored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from specialists.builtin.scoring import Prediction, _matches
from swarm.distill.dataset import Example

SCORED_ENTITY_TYPES = ("PERSON", "ORGANIZATION", "LOCATION")
"""The types the headline entity F1 is over: the ones every public NER corpus labels alike.
Dates and amounts come from rules, and MISC differs between corpora; both are reported apart."""


def _of_types(items: Any, types: Sequence[str]) -> list[Any]:
    if not isinstance(items, list):
        return []
    return [i for i in items if isinstance(i, dict) and i.get("type") in types]


def entity_scores(examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
    """Entity-level precision/recall/F1: an entity counts only with exact text and type.

    ``score`` is the F1 over :data:`SCORED_ENTITY_TYPES`; ``all_types`` scores every type.
    """

    def only(output: Any) -> dict[str, Any]:
        items = (output or {}).get("entities")
        return {"entities": _of_types(items, SCORED_ENTITY_TYPES)}

    named = _matches(
        [Example(e.input, only(e.output), e.meta) for e in examples],
        [only(p) for p in predictions],
        "entities",
    )
    every = _matches(examples, predictions, "entities")
    return {"score": named["f1"], **named, "all_types_f1": every["f1"]}
