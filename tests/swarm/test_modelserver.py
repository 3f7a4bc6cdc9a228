"""``swarm serve-model``: the command line it builds, a clear failed start, and a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from swarm.errors import ModelServerStartError
from swarm.modelserver import ModelServer, likely_cause, server_command, server_environment
from swarm.settings import Settings

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
        "--served-model-name smollm2-135m-instruct",
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
    assert env["VLLM_PLUGINS"] == "lora_filesystem_resolver"
    assert env["VLLM_LORA_RESOLVER_CACHE_DIR"] == str(tmp_path.resolve())


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
