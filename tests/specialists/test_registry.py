"""The registry against real Redis and a real vLLM server: drop, serve, replace, remove, reject."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from specialists.registry import Registry, validate_adapter_folder
from swarm.catalog import get_specialist, list_specialists
from swarm.errors import InvalidAdapter
from swarm.modelclient import ModelClient
from swarm.settings import Settings

from adapterfactory import builtin_manifest, make_lora, write_manifest
from conftest import VllmServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lora_template(vllm_server: VllmServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lora") / "template"
    return make_lora(folder, str(vllm_server.model_dir), base_name=vllm_server.served_base)


def adapter(root: Path, name: str, template: Path, *, version: str = "1", **config: Any) -> Path:
    folder = root / name
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(template, folder)
    write_manifest(folder, builtin_manifest(name, version=version))
    if config:
        path = folder / "adapter_config.json"
        data = json.loads(path.read_text())
        data.update(config)
        path.write_text(json.dumps(data))
    return folder


@pytest.fixture
async def registry(vllm_server: VllmServer, redis: Redis) -> AsyncIterator[Registry]:
    for child in vllm_server.adapters_dir.iterdir():
        shutil.rmtree(child)
    async with ModelClient(vllm_server.settings) as client:
        yield Registry(redis, vllm_server.settings, client)


async def served(settings: Settings) -> list[str]:
    async with ModelClient(settings) as client:
        return await client.list_models()


async def test_dropped_folder_becomes_servable_then_replaced_then_removed(
    registry: Registry, vllm_server: VllmServer, lora_template: Path, redis: Redis
) -> None:
    root = vllm_server.adapters_dir
    adapter(root, "notes", lora_template, version="1")
    write_manifest(root / "plain", builtin_manifest("plain"))  # prompt-only
    changed = await registry.sync_once()
    assert {n: r.status for n, r in changed.items()} == {"notes": "ready", "plain": "ready"}
    record = await get_specialist(redis, "notes")
    assert record and record.lora_name == "notes-v1" and record.version == "1"
    assert (await get_specialist(redis, "plain")).lora_name is None  # type: ignore[union-attr]
    assert "notes-v1" in await served(vllm_server.settings)

    async with ModelClient(vllm_server.settings) as client:
        # Random LoRA weights speak nonsense; servable means vLLM answers under that name.
        result = await client.chat(
            "notes-v1",
            [{"role": "user", "content": "Acme opened an office in Paris."}],
            max_tokens=8,
        )
    assert result.model == "notes-v1" and result.usage.completion_tokens > 0

    assert await registry.sync_once() == {}  # nothing changed, nothing reloaded

    async with ModelClient(vllm_server.settings) as client:
        await client.unload_adapter("notes-v1")  # as if vLLM had restarted
    await registry.sync_once()
    assert "notes-v1" in await served(vllm_server.settings)

    adapter(root, "notes", lora_template, version="2")
    changed = await registry.sync_once()
    assert changed["notes"].lora_name == "notes-v2"
    models = await served(vllm_server.settings)
    assert "notes-v2" in models and "notes-v1" not in models

    shutil.rmtree(root / "notes")
    await registry.sync_once()
    assert await get_specialist(redis, "notes") is None
    assert "notes-v2" not in await served(vllm_server.settings)
    assert [r.name for r in await list_specialists(redis)] == ["plain"]


REJECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("rank", {"r": 32}, "LoRA rank 32 exceeds the server's --max-lora-rank 16"),
    ("dora", {"use_dora": True}, "DoRA adapters (use_dora) are not supported"),
    ("bias", {"bias": "lora_only"}, "LoRA bias is not supported"),
    ("mts", {"modules_to_save": ["lm_head"]}, "modules_to_save ['lm_head'] is not supported"),
    ("tokens", {"trainable_token_indices": [1, 2]}, "the adapter adds tokens"),
    ("base", {"base_model_name_or_path": "meta-llama/Llama-3-8B"}, "trained on base model"),
    ("ia3", {"peft_type": "IA3"}, "peft_type is 'IA3'; only LORA adapters are served"),
]


@pytest.mark.parametrize(("name", "config", "reason"), REJECTIONS)
async def test_each_rejection_reason_is_published(
    registry: Registry,
    vllm_server: VllmServer,
    lora_template: Path,
    redis: Redis,
    name: str,
    config: dict[str, Any],
    reason: str,
) -> None:
    folder = adapter(vllm_server.adapters_dir, name, lora_template, **config)
    with pytest.raises(InvalidAdapter) as info:
        validate_adapter_folder(folder, vllm_server.settings)
    assert reason in info.value.reason
    await registry.sync_once()
    record = await get_specialist(redis, name)
    assert record is not None and record.status == "rejected"
    assert reason in (record.reason or "")


async def test_folder_level_rejections(
    registry: Registry, vllm_server: VllmServer, lora_template: Path, redis: Redis
) -> None:
    root = vllm_server.adapters_dir
    cases: dict[str, Callable[[Path], None]] = {
        "Upper": lambda f: write_manifest(f, builtin_manifest("Upper")),
        "half": lambda f: (
            write_manifest(f, builtin_manifest("half")),
            shutil.copy(lora_template / "adapter_config.json", f),
        ),
        "added": lambda f: (
            adapter(root, "added", lora_template),
            (f / "added_tokens.json").write_text('{"<x>": 49152}'),
        ),
    }
    for name, build in cases.items():
        build(root / name)
    await registry.sync_once()
    reasons = {r.name: r.reason for r in await list_specialists(redis)}
    assert "folder name must match" in (reasons["Upper"] or "")
    assert "adapter_model.safetensors is missing" in (reasons["half"] or "")
    assert "adds tokens" in (reasons["added"] or "")
