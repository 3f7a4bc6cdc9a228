"""Adapter folders, which are untrusted: what makes one valid, and what identifies its content.

:func:`validate_adapter_folder` reads a folder (``specialist.yaml`` and, optionally, PEFT LoRA
weights) and either returns its :class:`AdapterSpec` or raises :class:`InvalidAdapter` with the
reason a user can act on: links that leave the folder, too many or too large files, a manifest
that is not valid, a LoRA rank or variant vLLM cannot serve, added tokens, a base model other
than the served one. :func:`weights_digest` and :func:`fingerprint` say when the weights or the
folder changed; :func:`snapshot` copies weights where vLLM reads them. The watcher that acts on
all this is :mod:`specialists.registry`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm.errors import ConfigurationError, InvalidAdapter
from swarm.manifest import NAME_PATTERN, Manifest, load_manifest
from swarm.serving.basemodel import base_model_aliases, resolve_base_model, served_base_name
from swarm.settings import Settings

log = logging.getLogger(__name__)

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
WEIGHT_FILES = (CONFIG_FILE, WEIGHTS_FILE)
EVAL_FILE = "eval.json"
LORA_TENSOR_MARKERS = (".lora_A.", ".lora_B.", ".lora_embedding_A", ".lora_embedding_B")
"""Substrings of the only tensor names a servable LoRA holds."""
VOCAB_TENSORS = ("embed_tokens", "lm_head", "wte", "embed_out", "trainable_tokens")
MAX_HEADER_BYTES = 100 * 1024 * 1024
FILE_CAPS = {
    WEIGHTS_FILE: 4 << 30,
    "specialist.yaml": 256 << 10,
    CONFIG_FILE: 256 << 10,
    "tokenizer.json": 64 << 20,
}
"""Largest size of each file of a folder, in bytes. Other tensors (``*.safetensors``) may be as
large as the weights; any other file may have DEFAULT_FILE_CAP. A trainer's copy of the base
tokenizer is welcome: Gemma 3's ``tokenizer.json`` (262k words) is 33 MB."""
DEFAULT_FILE_CAP = 4 << 20
MOST_FILES = 200
"""Files and folders an adapter folder may hold (a tokenizer, an eval report, a README...)."""
DIGEST_CHARS = 8
UNSUPPORTED_VARIANTS = {
    "layer_replication": "layer replication",
    "alora_invocation_tokens": "Activated LoRA (aLoRA)",
    "use_qalora": "QALoRA",
    "use_bdlora": "block-diagonal LoRA",
}
"""Config keys of LoRA variants vLLM 0.32 refuses to load (see vllm/lora/peft_helper.py)."""
SUPPORTED_INITS = {"gaussian", "eva", "orthogonal", "mica", "lora_ga"}
"""String values of init_lora_weights that leave the base weights alone, so vLLM can serve."""


def lora_name(name: str, version: str, digest: str) -> str:
    """The name vLLM serves one version of a specialist's weights under.

    The version makes it readable, the digest makes it unique to the weights' content, so an
    in-place edit that forgot to bump the version still gets a fresh name (and a fresh cache).
    Names match ``^[a-z0-9][a-z0-9_-]*$`` and the version is digits and dots, so the last
    ``-v`` always starts the version: two specialists never share a LoRA name.
    """
    return f"{name}-v{version}-{digest[:DIGEST_CHARS]}"


@dataclass(frozen=True)
class AdapterSpec:
    """A validated adapter folder."""

    folder: Path
    manifest: Manifest
    weights_digest: str | None = None
    """SHA-256 of the LoRA config and weights; None for a prompt-only specialist."""
    eval_summary: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def has_weights(self) -> bool:
        return self.weights_digest is not None

    @property
    def lora_name(self) -> str | None:
        """The versioned name vLLM serves these weights under; None for prompt-only."""
        if self.weights_digest is None:
            return None
        return lora_name(self.name, self.manifest.version, self.weights_digest)


def validate_adapter_folder(folder: Path, settings: Settings) -> AdapterSpec:
    """Check a folder against the adapter contract (``adapters/README.md``).

    Pure file checks, no model server needed. Raises :class:`InvalidAdapter` naming the first
    problem found.
    """
    name = folder.name
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidAdapter(
            name, f"folder name must match {NAME_PATTERN.pattern} (lowercase, digits, - and _)"
        )
    _check_files(name, folder)
    manifest = load_manifest(folder)
    if manifest.base_model not in base_model_aliases(settings):
        raise InvalidAdapter(
            name,
            f"specialist.yaml names base_model {manifest.base_model!r}, but the server serves "
            f"{served_base_name(settings)!r}",
        )
    present = [f for f in WEIGHT_FILES if (folder / f).is_file()]
    if not present:
        if (folder / "adapter_model.bin").exists():
            raise InvalidAdapter(
                name, "adapter_model.bin is not served; save the weights as safetensors"
            )
        return AdapterSpec(folder, manifest, None, _eval_summary(folder))
    if len(present) < len(WEIGHT_FILES):
        missing = next(f for f in WEIGHT_FILES if f not in present)
        raise InvalidAdapter(name, f"LoRA weights are incomplete: {missing} is missing")
    config = _read_config(name, folder)
    _check_lora_config(name, config, settings)
    _check_tokens(name, folder, config, settings)
    _check_tensors(name, folder, settings)
    _check_base_model(name, config, settings)
    return AdapterSpec(folder, manifest, weights_digest(folder), _eval_summary(folder))


def _check_files(name: str, folder: Path) -> None:
    """The folder is untrusted: it must be a real folder whose links stay inside it, with at
    most :data:`MOST_FILES` entries, each file within its size cap (:data:`FILE_CAPS`)."""
    if folder.is_symlink():
        raise InvalidAdapter(name, "the folder is a symbolic link; copy the adapter in instead")
    root = folder.resolve()
    entries = 0
    for directory, subdirectories, files in os.walk(folder, followlinks=False):
        for entry in [*subdirectories, *files]:
            entries += 1
            if entries > MOST_FILES:
                raise InvalidAdapter(name, f"the folder holds more than {MOST_FILES} files")
            path = Path(directory) / entry
            relative = path.relative_to(folder)
            if path.is_symlink():
                target = path.resolve()
                if target != root and root not in target.parents:
                    raise InvalidAdapter(
                        name, f"{relative} is a symbolic link that leaves the folder"
                    )
            if entry in files:
                weights = entry.endswith(".safetensors")
                cap = FILE_CAPS.get(
                    str(relative), FILE_CAPS[WEIGHTS_FILE] if weights else DEFAULT_FILE_CAP
                )
                size = path.stat().st_size if path.exists() else 0
                if size > cap:
                    raise InvalidAdapter(
                        name, f"{relative} is {size} bytes; at most {cap} are read"
                    )


def _read_config(name: str, folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise InvalidAdapter(name, f"{CONFIG_FILE} is not readable JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidAdapter(name, f"{CONFIG_FILE} must hold a JSON object")
    return config


def _check_lora_config(name: str, config: dict[str, Any], settings: Settings) -> None:
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        raise InvalidAdapter(name, f"peft_type is {peft_type!r}; only LORA adapters are served")
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    if not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in ranks):
        raise InvalidAdapter(name, f"LoRA ranks must be positive integers, got {ranks}")
    if max(ranks) > settings.max_lora_rank:
        raise InvalidAdapter(
            name,
            f"LoRA rank {max(ranks)} exceeds the server's --max-lora-rank "
            f"{settings.max_lora_rank} (SWARM_MAX_LORA_RANK)",
        )
    if config.get("use_dora"):
        raise InvalidAdapter(name, "DoRA adapters (use_dora) are not supported by vLLM")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise InvalidAdapter(name, "LoRA bias is not supported; train with bias='none'")
    if config.get("modules_to_save"):
        raise InvalidAdapter(
            name, f"modules_to_save {config['modules_to_save']} is not supported by vLLM"
        )
    for key, variant in UNSUPPORTED_VARIANTS.items():
        if config.get(key):
            raise InvalidAdapter(name, f"{variant} ({key}) is not supported by vLLM")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower() not in SUPPORTED_INITS:
        raise InvalidAdapter(
            name,
            f"init_lora_weights={init!r} changes the base weights, so vLLM cannot serve it; "
            "convert it to a plain LoRA first",
        )


def _check_tokens(name: str, folder: Path, config: dict[str, Any], settings: Settings) -> None:
    """Refuse adapters that add tokens: vLLM serves the base vocabulary only."""
    if config.get("trainable_token_indices"):
        raise InvalidAdapter(
            name, "the adapter adds tokens (trainable_token_indices); vLLM serves the base vocab"
        )
    added = folder / "added_tokens.json"
    if added.exists():
        try:
            count = len(json.loads(added.read_text(encoding="utf-8")) or {})
        except (ValueError, OSError, TypeError):
            count = -1
        if count:
            raise InvalidAdapter(
                name, "the adapter adds tokens (added_tokens.json); vLLM serves the base vocab"
            )
    if (folder / "new_embeddings.safetensors").exists():
        raise InvalidAdapter(
            name, "the adapter adds tokens (new_embeddings.safetensors); vLLM serves the base vocab"
        )
    # Trainers often save the tokenizer next to the adapter; that is harmless unless it holds
    # ids beyond the base model's vocabulary.
    vocab = _base_vocab_size(settings)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        top = _max_token_id(folder / file)
        if vocab is not None and top is not None and top >= vocab:
            raise InvalidAdapter(
                name,
                f"the adapter adds tokens ({file} has token id {top}, the base vocabulary "
                f"has {vocab}); vLLM serves the base vocab",
            )


def _base_vocab_size(settings: Settings) -> int | None:
    """The served base's vocabulary size, when its config is on this machine."""
    try:
        config = Path(resolve_base_model(settings)) / "config.json"
        value = json.loads(config.read_text(encoding="utf-8")).get("vocab_size")
    except (ConfigurationError, OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _max_token_id(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    ids: list[Any] = []
    if isinstance(data, dict):
        model = data.get("model")
        vocab = model.get("vocab") if isinstance(model, dict) else None
        if isinstance(vocab, dict):
            ids += [v for v in vocab.values() if isinstance(v, int)]
        ids += [t.get("id") for t in data.get("added_tokens") or [] if isinstance(t, dict)]
        decoder = data.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            ids += [int(k) for k in decoder if str(k).isdigit()]
    ids = [i for i in ids if isinstance(i, int)]
    return max(ids) if ids else None


def safetensors_header(path: Path) -> dict[str, Any]:
    """The tensor table of a safetensors file (names, dtypes, shapes), read without the data."""
    with path.open("rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise ValueError("file is shorter than a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"header claims {length} bytes")
        header = json.loads(file.read(length))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    header.pop("__metadata__", None)
    return header


def _check_tensors(name: str, folder: Path, settings: Settings) -> None:
    try:
        tensors = safetensors_header(folder / WEIGHTS_FILE)
    except (OSError, ValueError) as exc:
        raise InvalidAdapter(
            name, f"{WEIGHTS_FILE} is not a readable safetensors file: {exc}"
        ) from exc
    if not tensors:
        raise InvalidAdapter(name, f"{WEIGHTS_FILE} holds no tensors")
    for tensor in sorted(tensors):
        if any(marker in tensor for marker in LORA_TENSOR_MARKERS):
            continue
        if any(part in tensor for part in VOCAB_TENSORS):
            raise InvalidAdapter(
                name,
                f"the adapter adds tokens or retrains the embeddings ({tensor} is a full "
                "embedding/output matrix); vLLM serves the base vocab",
            )
        raise InvalidAdapter(
            name,
            f"{WEIGHTS_FILE} holds {tensor}, which is not a LoRA A/B matrix (DoRA magnitudes, "
            "biases and modules_to_save are not supported by vLLM)",
        )
    ranks = [
        int(info["shape"][0])
        for tensor, info in tensors.items()
        if ".lora_A." in tensor and isinstance(info, dict) and info.get("shape")
    ]
    if ranks and max(ranks) > settings.max_lora_rank:
        raise InvalidAdapter(
            name,
            f"LoRA rank {max(ranks)} (in the weights) exceeds the server's --max-lora-rank "
            f"{settings.max_lora_rank} (SWARM_MAX_LORA_RANK)",
        )


def _check_base_model(name: str, config: dict[str, Any], settings: Settings) -> None:
    base = config.get("base_model_name_or_path")
    aliases = base_model_aliases(settings)
    if base not in aliases:
        raise InvalidAdapter(
            name,
            f"trained on base model {base!r}, but the server serves {settings.base_model!r} "
            f"(accepted: {', '.join(sorted(aliases))})",
        )


def _eval_summary(folder: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((folder / EVAL_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    return None


def weights_digest(folder: Path) -> str:
    """SHA-256 over the LoRA config and weights: what makes two versions different."""
    digest = hashlib.sha256()
    for file in WEIGHT_FILES:
        digest.update(file.encode() + b"\0")
        with (folder / file).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def fingerprint(folder: Path) -> str:
    """Changes when any file in the folder is added, removed, resized or touched.

    Links are not followed and at most :data:`MOST_FILES` entries are read, so a folder linked
    to ``/`` costs one look, not a walk of the file system every poll."""
    digest = hashlib.sha256()
    if folder.is_symlink():
        digest.update(f"link:{os.readlink(folder)}".encode())
        return digest.hexdigest()
    seen = 0
    for directory, subdirectories, files in os.walk(folder, followlinks=False):
        subdirectories.sort()
        for entry in sorted(files):
            seen += 1
            if seen > MOST_FILES:
                return digest.hexdigest()
            path = Path(directory) / entry
            with contextlib.suppress(OSError):  # deleted while we look: the next pass sees it
                stat = path.lstat()
                relative = path.relative_to(folder)
                digest.update(f"{relative}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class FolderChanged(Exception):
    """The folder changed between validation and copy; the next pass picks up the new files."""


def snapshot(spec: AdapterSpec, settings: Settings) -> Path:
    """An immutable copy of the weights for vLLM to read, ``$SWARM_HOME/loras/<lora name>``.

    Raises :class:`FolderChanged` if the folder changed while it was copied.
    """
    assert spec.lora_name is not None and spec.weights_digest is not None
    target = snapshots_dir(settings) / spec.lora_name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".copy-"))
    try:
        for file in WEIGHT_FILES:
            shutil.copy2(spec.folder / file, tmp / file)
        if weights_digest(tmp) != spec.weights_digest:
            raise FolderChanged(spec.name)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def snapshots_dir(settings: Settings) -> Path:
    """Where the weights vLLM serves are copied to."""
    return settings.home / "loras"
