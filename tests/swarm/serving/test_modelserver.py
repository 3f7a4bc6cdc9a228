"""``swarm serve-model``: the command line it builds, a clear failed start, and a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import pytest

from swarm.errors import ModelServerStartError
from swarm.serving.basemodel import resolve_base_model
from swarm.serving.modelserver import ModelServer, likely_cause, server_command, server_environment
from swarm.settings import DEFAULT_BASE_MODEL, Settings

from adapterfactory import make_lora
from conftest import TEST_HOME, VllmServer, free_port


def test_command_line_carries_every_lora_setting(tmp_path: Path) -> None:
    settings = Settings(
        vllm_port=8123,
        max_loras=3,
        max_lora_rank=32,
        max_cpu_loras=7,
        max_model_len=1024,
        vllm_extra_args="--seed 7",
        vllm_device="cpu",
        adapters_dir=tmp_path,
    )
    command = server_command(settings, "/models/base")
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(command)
    for part in (
        "--model /models/base",
        f"--served-model-name {DEFAULT_BASE_MODEL}",
        "--port 8123",
        "--enable-lora",
        "--max-loras 3",
        "--max-lora-rank 32",
        "--max-cpu-loras 7",
        "--max-model-len 1024",
        "--seed 7",
    ):
        assert part in joined
    env = server_environment(settings)
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_PLUGINS"] == "swarm_grouped_cpu_lora"
    assert "VLLM_LORA_RESOLVER_CACHE_DIR" not in env
    assert "--api-key" not in command


def test_the_filesystem_resolver_runs_only_when_asked_for(tmp_path: Path) -> None:
    settings = Settings(adapters_dir=tmp_path, vllm_device="gpu", vllm_fs_resolver=True)
    env = server_environment(settings)
    assert env["VLLM_PLUGINS"] == "lora_filesystem_resolver"
    assert env["VLLM_LORA_RESOLVER_CACHE_DIR"] == str(tmp_path.resolve())


def test_the_vllm_api_key_is_passed_to_vllm(tmp_path: Path) -> None:
    settings = Settings(adapters_dir=tmp_path, vllm_api_key="s3cret")  # type: ignore[arg-type]
    command = server_command(settings, "/models/base")
    assert command[command.index("--api-key") + 1] == "s3cret"


def test_plugins_a_user_named_are_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VLLM_PLUGINS", "my_plugin")
    env = server_environment(Settings(adapters_dir=tmp_path, vllm_device="cpu"))
    assert env["VLLM_PLUGINS"] == "my_plugin,swarm_grouped_cpu_lora"


def test_the_grouped_cpu_lora_ops_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VLLM_PLUGINS", "swarm_grouped_cpu_lora")
    settings = Settings(adapters_dir=tmp_path, vllm_device="cpu", grouped_cpu_lora=False)
    assert server_environment(settings)["VLLM_PLUGINS"] == ""
    # On a GPU vLLM's fused kernels serve LoRA; the plugin is not asked for.
    gpu = Settings(adapters_dir=tmp_path, vllm_device="gpu")
    assert server_environment(gpu)["VLLM_PLUGINS"] == ""


def test_likely_causes() -> None:
    assert "port is already in use" in likely_cause("OSError: [Errno 98] Address already in use")
    assert likely_cause("something else") == "see the log below"


@pytest.mark.slow
def test_a_failed_start_is_one_clear_line_and_the_log_tail(tmp_path: Path) -> None:
    settings = Settings(
        home=TEST_HOME,
        adapters_dir=tmp_path,
        vllm_port=free_port(),
        vllm_extra_args="--no-such-flag",
        vllm_startup_timeout_s=120,
    )
    with pytest.raises(ModelServerStartError) as info, ModelServer(settings):
        pass
    first, *tail = str(info.value).splitlines()
    assert first.startswith("vLLM exited with status")
    assert "an argument in SWARM_VLLM_EXTRA_ARGS is" in first
    assert any("--no-such-flag" in line for line in tail)


@pytest.mark.slow
def test_the_server_serves_the_base_model(vllm_server: VllmServer) -> None:
    models = httpx.get(f"{vllm_server.url}/v1/models", timeout=10).json()
    assert models["data"][0]["id"] == vllm_server.served_base


@pytest.mark.slow
def test_json_schema_output_is_valid_against_the_schema(vllm_server: VllmServer) -> None:
    """One example turn first, as the worker sends a manifest's few-shot examples: the default
    base is a pretrained model, and asked cold it can spend every token on the whitespace the
    JSON grammar allows."""
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "enum": ["Paris", "London", "Rome"]},
            "is_capital": {"type": "boolean"},
        },
        "required": ["city", "is_capital"],
        "additionalProperties": False,
    }
    body = {
        "model": vllm_server.served_base,
        "messages": [
            {"role": "user", "content": "Which city is the capital of Italy?"},
            {"role": "assistant", "content": '{"city": "Rome", "is_capital": true}'},
            {"role": "user", "content": "Which city is the capital of France?"},
        ],
        "max_tokens": 64,
        "temperature": 0.0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    }
    response = httpx.post(f"{vllm_server.url}/v1/chat/completions", json=body, timeout=120)
    response.raise_for_status()
    jsonschema.validate(json.loads(response.json()["choices"][0]["message"]["content"]), schema)


@pytest.mark.slow
def test_a_folder_dropped_into_the_adapters_dir_is_not_served_by_name(
    vllm_server: VllmServer,
) -> None:
    # vLLM's filesystem resolver is off (SWARM_VLLM_FS_RESOLVER): a request cannot load a
    # folder by its name, skipping the registry's checks; only the registry loads adapters.
    make_lora(
        vllm_server.adapters_dir / "dropped",
        str(vllm_server.model_dir),
        base_name=resolve_base_model(vllm_server.settings),
    )
    body = {
        "model": "dropped",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 4,
    }
    response = httpx.post(f"{vllm_server.url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 404, response.text
    assert "does not exist" in response.text
