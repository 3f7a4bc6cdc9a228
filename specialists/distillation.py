"""Which specialist the distillation pipeline trains: a built-in one, or a dropped-in folder.

A built-in specialist brings its generator of synthetic data with exact labels and its task
metric. A specialist from ``adapters/<name>/specialist.yaml`` brings its manifest only: it is
distilled from a JSONL of inputs labelled by the teacher, and scored by exact match.
"""

from __future__ import annotations

from specialists.builtin import BUILTINS
from specialists.builtin.entities import data as entitydata
from specialists.builtin.entities.scoring import entity_scores
from specialists.builtin.pii import data as piidata
from specialists.builtin.pii.scoring import pii_scores
from specialists.builtin.sql import data as sqldata
from specialists.builtin.sql.scoring import sql_scores
from specialists.manifest import MANIFEST_FILE, load_manifest
from swarm.distill.evaluation import exact_match
from swarm.distill.pipeline import Specialist
from swarm.errors import UnknownSpecialist
from swarm.settings import Settings

TRAINABLE = {
    "pii": (piidata.generate, pii_scores, "span_f1"),
    "entities": (entitydata.generate, entity_scores, "entity_f1"),
    "sql": (sqldata.generate, sql_scores, "execution_accuracy"),
}


def find_specialist(name: str, settings: Settings) -> Specialist:
    """The built-in ``name``, else the manifest in ``adapters/<name>/``."""
    if name in BUILTINS:
        definition = BUILTINS[name]
        generate, scorer, metric = TRAINABLE[name]
        return Specialist(
            name=name,
            manifest=definition.manifest(),
            scorer=scorer,
            metric=metric,
            generate=generate,
            check=definition.check,
            finish=definition.finish,
        )
    folder = settings.adapters_dir / name
    if (folder / MANIFEST_FILE).is_file():
        manifest = load_manifest(folder)
        return Specialist(
            name=name,
            manifest=manifest.model_dump(mode="json", exclude_none=True),
            scorer=exact_match,
            metric="exact_match",
        )
    known = ", ".join(sorted(BUILTINS))
    raise UnknownSpecialist(
        f"no specialist {name!r}: not built in ({known}) and no {folder}/specialist.yaml"
    )
