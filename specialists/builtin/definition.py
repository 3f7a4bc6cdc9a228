"""What a built-in specialist is made of: its manifest, and checks beyond the JSON schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

from swarm.evaluation import Check, Finish

TEXT_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1}},
    "required": ["text"],
}
"""The input of a specialist that reads one text."""


def quoted_items(items: Any) -> TypeGuard[list[dict[str, Any]]]:
    """Whether ``items`` is a list of ``{"text": str, "type": str, ...}``, the shape of pii's
    spans and of entities: what their finish steps repair. Anything else is left to the schema
    check, which says what is wrong with it."""
    return isinstance(items, list) and all(
        isinstance(i, dict) and isinstance(i.get("text"), str) and isinstance(i.get("type"), str)
        for i in items
    )


def as_written(text: str, value: str) -> str:
    """``value`` as ``text`` writes it: itself if it occurs there, else the stretch of ``text``
    that differs from it only in letter case, else ""."""
    if value in text:
        return value
    at = text.lower().find(value.lower())
    return text[at : at + len(value)] if at >= 0 else ""


@dataclass(frozen=True)
class Definition:
    name: str
    description: str
    keywords: tuple[str, ...]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    system_prompt: str
    few_shot: tuple[dict[str, Any], ...] = ()
    decoding: dict[str, Any] = field(default_factory=dict)
    handoff: dict[str, str] = field(default_factory=dict)
    """Which of this specialist's output fields become which input fields of the next one."""
    check: Check | None = None
    finish: Finish | None = None
    """Deterministic repairs of the model's output, applied before ``check``."""
    version: str = "0.1.0"

    def manifest(self) -> dict[str, Any]:
        """The manifest as it is shipped in ``adapters/<name>/specialist.yaml``."""
        manifest: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "keywords": list(self.keywords),
            "base_model": "smollm2-135m-instruct",
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "system_prompt": self.system_prompt,
            "few_shot": [dict(example) for example in self.few_shot],
            "decoding": dict(self.decoding),
        }
        if self.handoff:
            manifest["handoff"] = dict(self.handoff)
        return manifest
