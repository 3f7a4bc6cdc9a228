"""Which specialist the distillation pipeline trains: a built-in one, or a dropped-in folder.

A built-in specialist brings its generator of synthetic data with exact labels and its task
metric. A specialist from ``adapters/<name>/specialist.yaml`` brings its manifest only: it is
distilled from a JSONL of inputs labelled by the teacher, and scored by exact match.
"""

from __future__ import annotations

from specialists.builtin import BUILTINS
from swarm.errors import UnknownSpecialist
from swarm.manifest import MANIFEST_FILE, Specialist, load_manifest
from swarm.settings import Settings


def find_specialist(name: str, settings: Settings) -> Specialist:
    """The built-in ``name``, else the manifest in ``adapters/<name>/``."""
    if name in BUILTINS:
        return BUILTINS[name]
    folder = settings.adapters_dir / name
    if (folder / MANIFEST_FILE).is_file():
        return Specialist(manifest=load_manifest(folder))
    known = ", ".join(sorted(BUILTINS))
    raise UnknownSpecialist(
        f"no specialist {name!r}: not built in ({known}) and no {folder}/specialist.yaml"
    )
