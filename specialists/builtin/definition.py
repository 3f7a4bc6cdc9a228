"""What every built-in specialist's manifest starts from."""

from __future__ import annotations

from typing import Any

from swarm.manifest import Manifest
from swarm.settings import DEFAULT_BASE_MODEL

VERSION = "0.1.0"
"""A built-in's own version; a distilled folder's manifest carries a later one."""
BASE_MODEL = DEFAULT_BASE_MODEL
"""The base a built-in's prompt was written for; a distilled folder names the one it was
trained on."""
TEXT_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1}},
    "required": ["text"],
}
"""The input of a specialist that reads one text."""


def builtin_manifest(fields: dict[str, Any]) -> Manifest:
    """A built-in's manifest: ``fields`` at :data:`VERSION` on :data:`BASE_MODEL`, validated."""
    return Manifest.model_validate({"version": VERSION, "base_model": BASE_MODEL, **fields})
