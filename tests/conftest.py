"""Shared fixtures: a real Redis database per test, and one real vLLM server per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarm.serving.basemodel import prepare_default_model, served_base_name
from swarm.serving.modelserver import ModelServer
from swarm.settings import Settings

from ports import free_port

pytest_plugins = ["redisfixture"]

TEST_HOME = Path(os.environ.get("SWARM_TEST_HOME", "~/.cache/swarm-test")).expanduser()
"""Where the test session keeps the prepared default model, so it is built once per machine."""


@dataclass(frozen=True)
class VllmServer:
    """The session's vLLM server; drop adapter folders into ``adapters_dir`` to serve them."""

    url: str
    adapters_dir: Path
    settings: Settings
    served_base: str
    model_dir: Path


def cpu_multiplies_bf16() -> bool:
    """Whether this CPU has bf16 matmul units, from the kernel's flags (not torch's probes)."""
    flags = Path("/proc/cpuinfo").read_text().split()
    return "avx512_bf16" in flags or "amx_tile" in flags


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The prepared default model, built once per machine under ``$SWARM_TEST_HOME``."""
    return prepare_default_model(Settings(home=TEST_HOME))


@pytest.fixture(scope="session")
def vllm_server(
    default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    """One vLLM server with the default model, LoRA on, adapters dir in a session tmp dir."""
    adapters = tmp_path_factory.mktemp("adapters")
    port = free_port()
    settings = Settings(
        home=TEST_HOME,
        adapters_dir=adapters,
        vllm_port=port,
        vllm_urls=[f"http://127.0.0.1:{port}"],
        max_lora_rank=16,
        max_loras=4,
        max_model_len=2048,
        vllm_startup_timeout_s=600,
    )
    with ModelServer(settings) as server:
        yield VllmServer(
            server.url, adapters, settings, served_base_name(settings), default_model_dir
        )
