"""The built-in specialists: ``sql``, ``pii`` and ``entities``.

Each module defines one specialist's manifest (prompt, schemas, few-shot examples, decoding)
and the checks that go beyond its JSON schema. The folders in ``adapters/`` ship these
manifests; until distilled weights land there, each runs prompt-only on the base model.
"""

from __future__ import annotations

from specialists.builtin import entities, pii, sql
from specialists.builtin.definition import Definition

BUILTINS: dict[str, Definition] = {
    d.name: d for d in (pii.DEFINITION, entities.DEFINITION, sql.DEFINITION)
}

__all__ = ["BUILTINS", "Definition"]
