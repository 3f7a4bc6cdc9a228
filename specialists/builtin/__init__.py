"""The built-in specialists: ``sql``, ``pii`` and ``entities``.

Each package holds one specialist: its manifest and the code that goes with it (finish step and
checks beyond its JSON schema, training-data generator, scorer), as one
:class:`swarm.manifest.Specialist`. The folders in ``adapters/`` ship these manifests with
distilled weights.
"""

from __future__ import annotations

from specialists.builtin import entities, pii, sql
from swarm.manifest import Specialist

BUILTINS: dict[str, Specialist] = {
    s.name: s for s in (pii.SPECIALIST, entities.SPECIALIST, sql.SPECIALIST)
}

__all__ = ["BUILTINS"]
