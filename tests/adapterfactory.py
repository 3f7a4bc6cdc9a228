"""Builds real PEFT LoRA adapter folders for tests, valid ones and each kind of invalid one.

The weights are random (LoRA B is perturbed from its zero init so the adapter changes outputs),
which is all serving and validation need. The invalid variants are the ones vLLM refuses or
serves wrongly: a rank above ``--max-lora-rank`` (``rank=128``), DoRA, trained biases,
``modules_to_save``, added tokens, a base model other than the served one (``base_name``), a
non-LoRA PEFT type, and any other config key (``config_changes``).
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from specialists.builtin import BUILTINS
from swarm.manifest import Manifest
from swarm.settings import DEFAULT_BASE_MODEL


@cache
def _base(model_dir: str) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir)


def make_lora(
    folder: Path,
    model_dir: str,
    *,
    base_name: str,
    rank: int = 8,
    use_dora: bool = False,
    bias: str = "none",
    modules_to_save: list[str] | None = None,
    added_tokens: int = 0,
    peft_type: str = "LORA",
    config_changes: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Write adapter_config.json and adapter_model.safetensors for a random LoRA.

    ``base_name`` goes into ``base_model_name_or_path``; ``added_tokens`` writes an
    ``added_tokens.json`` with that many ids past the base vocab; ``peft_type`` and
    ``config_changes`` overwrite adapter_config.json fields after PEFT saved it.
    """
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules="all-linear",
        use_dora=use_dora,
        bias=bias,  # type: ignore[arg-type]
        modules_to_save=modules_to_save,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(copy.deepcopy(_base(model_dir)), config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    model.save_pretrained(str(folder))
    adapter_config = folder / "adapter_config.json"
    data = json.loads(adapter_config.read_text())
    data["base_model_name_or_path"] = base_name
    data["peft_type"] = peft_type
    data.update(config_changes or {})
    adapter_config.write_text(json.dumps(data, indent=2))
    if added_tokens:
        vocab = int(_base(model_dir).config.vocab_size)
        extra = {f"<extra_{i}>": vocab + i for i in range(added_tokens)}
        (folder / "added_tokens.json").write_text(json.dumps(extra))
    return folder


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Write ``specialist.yaml`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "specialist.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return folder


def manifest_of(name: str, /, **fields: Any) -> Manifest:
    """A valid manifest for ``name``: ``fields`` over the least that every manifest needs."""
    return Manifest.model_validate(
        {
            "name": name,
            "version": "0.1.0",
            "description": f"The {name} specialist.",
            "base_model": DEFAULT_BASE_MODEL,
            "input_schema": {"type": "object"},
            "output_schema": {"type": "object"},
            "system_prompt": f"You are the {name} specialist.",
            **fields,
        }
    )


def builtin_manifest(name: str, /, **changes: Any) -> dict[str, Any]:
    """A built-in specialist's manifest, renamed or changed for a test."""
    manifest = BUILTINS["entities" if name not in BUILTINS else name].manifest.document()
    manifest["name"] = name
    manifest.update(changes)
    return manifest


def copy_adapter(src: Path, dst: Path) -> Path:
    """Copy an adapter folder (merging into ``dst`` if it exists)."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


async def register_builtins(redis: Any) -> None:
    """Publish the built-in specialists to the catalog as ready, prompt-only records."""
    from swarm.catalog import SpecialistRecord, put_specialist

    for builtin in BUILTINS.values():
        manifest = builtin.manifest
        await put_specialist(
            redis,
            SpecialistRecord(
                name=manifest.name,
                version=manifest.version,
                status="ready",
                description=manifest.description,
                manifest=manifest,
            ),
        )
