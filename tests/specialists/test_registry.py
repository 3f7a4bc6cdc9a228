"""The registry: every rejection reason (pure file checks), the catalog in real Redis, and the
serving life cycle against a real vLLM server: drop, serve, replace, remove."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from safetensors.torch import load_file, save_file

from specialists.folders import validate_adapter_folder
from specialists.registry import Registry
from swarm import names
from swarm.catalog import get_specialist, list_specialists
from swarm.errors import InvalidAdapter
from swarm.serving.basemodel import served_base_name
from swarm.serving.modelclient import ModelClient
from swarm.settings import Settings

from adapterfactory import builtin_manifest, make_lora, write_manifest
from conftest import TEST_HOME, VllmServer, free_port
from redisfixture import TEST_REDIS_URL

MAX_RANK = 16


@pytest.fixture(scope="module")
def lora_template(default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid random-weight LoRA (rank 8) for the default base, built once per module."""
    settings = Settings(home=TEST_HOME)
    folder = tmp_path_factory.mktemp("lora") / "template"
    return make_lora(folder, str(default_model_dir), base_name=served_base_name(settings))


@pytest.fixture
def settings(tmp_path: Path, default_model_dir: Path) -> Settings:
    (tmp_path / "adapters").mkdir()
    return Settings(
        home=TEST_HOME,
        redis_url=TEST_REDIS_URL,
        adapters_dir=tmp_path / "adapters",
        max_lora_rank=MAX_RANK,
        vllm_urls=[f"http://127.0.0.1:{free_port()}"],  # nothing listens: vLLM is down
    )


def adapter(root: Path, name: str, template: Path, *, version: str = "1", **config: Any) -> Path:
    """Copy the template LoRA into ``root/name`` with a manifest, editing its config."""
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


def peft_variant(root: Path, name: str, model_dir: Path, **options: Any) -> Path:
    """A LoRA really trained-shaped by PEFT with an option vLLM cannot serve."""
    folder = root / name
    make_lora(
        folder, str(model_dir), base_name=served_base_name(Settings(home=TEST_HOME)), **options
    )
    return write_manifest(folder, builtin_manifest(name))


def add_tensor(folder: Path, tensor: str) -> Path:
    """Add one extra (non-LoRA) tensor to the adapter's weights."""
    path = folder / "adapter_model.safetensors"
    tensors = load_file(str(path))
    tensors[tensor] = next(iter(tensors.values())).clone()
    save_file(tensors, str(path))
    return path


# Every rejection reason: (folder name, how to break a valid LoRA folder, expected reason).
Breaker = Callable[[Path, Path], Any]
REJECTIONS: list[tuple[str, Breaker, str]] = [
    ("Upper", lambda f, t: adapter(f.parent, f.name, t), "folder name must match"),
    ("bad.name", lambda f, t: adapter(f.parent, f.name, t), "folder name must match"),
    ("nomanifest", lambda f, t: shutil.copytree(t, f), "no specialist.yaml"),
    (
        "mismatch",
        lambda f, t: write_manifest(f, builtin_manifest("other")),
        "manifest name 'other' differs from the folder name",
    ),
    (
        "unknownkey",
        lambda f, t: write_manifest(f, builtin_manifest("unknownkey", colour="blue")),
        "unknown key 'colour'",
    ),
    (
        "half",
        lambda f, t: (
            write_manifest(f, builtin_manifest("half")),
            shutil.copy(t / "adapter_config.json", f),
        ),
        "LoRA weights are incomplete: adapter_model.safetensors is missing",
    ),
    (
        "noconfig",
        lambda f, t: (
            write_manifest(f, builtin_manifest("noconfig")),
            shutil.copy(t / "adapter_model.safetensors", f),
        ),
        "LoRA weights are incomplete: adapter_config.json is missing",
    ),
    (
        "pickle",
        lambda f, t: (
            write_manifest(f, builtin_manifest("pickle")),
            (f / "adapter_model.bin").write_bytes(b"\x80"),
        ),
        "adapter_model.bin is not served",
    ),
    (
        "notjson",
        lambda f, t: (
            adapter(f.parent, f.name, t),
            (f / "adapter_config.json").write_text("{"),
        ),
        "adapter_config.json is not readable JSON",
    ),
    (
        "ia3",
        lambda f, t: adapter(f.parent, f.name, t, peft_type="IA3"),
        "peft_type is 'IA3'; only LORA adapters are served",
    ),
    (
        "rankstr",
        lambda f, t: adapter(f.parent, f.name, t, r="8"),
        "LoRA ranks must be positive integers",
    ),
    (
        "rankcfg",
        lambda f, t: adapter(f.parent, f.name, t, rank_pattern={"q_proj": 64}),
        f"LoRA rank 64 exceeds the server's --max-lora-rank {MAX_RANK}",
    ),
    ("pissa", lambda f, t: adapter(f.parent, f.name, t, init_lora_weights="pissa"), "pissa"),
    (
        "replicate",
        lambda f, t: adapter(f.parent, f.name, t, layer_replication=[[0, 4]]),
        "layer replication (layer_replication) is not supported by vLLM",
    ),
    (
        "trainable",
        lambda f, t: adapter(f.parent, f.name, t, trainable_token_indices=[1, 2]),
        "the adapter adds tokens (trainable_token_indices)",
    ),
    (
        "addedjson",
        lambda f, t: (
            adapter(f.parent, f.name, t),
            (f / "added_tokens.json").write_text('{"<x>": 49152}'),
        ),
        "the adapter adds tokens (added_tokens.json)",
    ),
    (
        "newembed",
        lambda f, t: (
            adapter(f.parent, f.name, t),
            shutil.copy(t / "adapter_model.safetensors", f / "new_embeddings.safetensors"),
        ),
        "the adapter adds tokens (new_embeddings.safetensors)",
    ),
    (
        "resized",
        lambda f, t: (
            adapter(f.parent, f.name, t),
            add_tensor(f, "base_model.model.model.embed_tokens.weight"),
        ),
        "retrains the embeddings (base_model.model.model.embed_tokens.weight",
    ),
    (
        "magnitude",
        lambda f, t: (
            adapter(f.parent, f.name, t),
            add_tensor(f, "base_model.model.model.layers.0.self_attn.q_proj.magnitude"),
        ),
        "which is not a LoRA A/B matrix",
    ),
    (
        "truncated",
        lambda f, t: (
            adapter(f.parent, f.name, t),
            (f / "adapter_model.safetensors").write_bytes(b"\x10\x00"),
        ),
        "adapter_model.safetensors is not a readable safetensors file",
    ),
    (
        "wrongbase",
        lambda f, t: adapter(f.parent, f.name, t, base_model_name_or_path="meta-llama/Llama-3-8B"),
        "trained on base model 'meta-llama/Llama-3-8B', but the server serves",
    ),
    # An adapter folder is untrusted: what it links to, how big it is, what its YAML expands to.
    (
        "linkedeval",
        lambda f, t: (adapter(f.parent, f.name, t), (f / "eval.json").symlink_to("/etc/hostname")),
        "eval.json is a symbolic link that leaves the folder",
    ),
    (
        "linkedroot",
        lambda f, t: f.symlink_to("/"),
        "the folder is a symbolic link",
    ),
    (
        "bigeval",
        lambda f, t: (adapter(f.parent, f.name, t), (f / "eval.json").write_text(" " * (5 << 20))),
        "eval.json is 5242880 bytes; at most 4194304 are read",
    ),
    (
        "bigtokenizer",
        lambda f, t: (
            adapter(f.parent, f.name, t),
            (f / "tokenizer.json").write_text(" " * ((64 << 20) + 1)),
        ),
        "tokenizer.json is 67108865 bytes; at most 67108864 are read",
    ),
    (
        "aliases",
        lambda f, t: (
            adapter(f.parent, f.name, t),
            (f / "specialist.yaml").write_text(
                (f / "specialist.yaml").read_text()
                + "".join(f"x{i}: &x{i} [*x{i - 1}, *x{i - 1}]\n" for i in range(1, 4)).replace(
                    "*x0, *x0", "1, 2"
                )
            ),
        ),
        "specialist.yaml uses YAML aliases",
    ),
    (
        "otherbase",
        lambda f, t: (
            adapter(f.parent, f.name, t),
            write_manifest(f, {**builtin_manifest(f.name), "base_model": "llama-3-8b"}),
        ),
        "specialist.yaml names base_model 'llama-3-8b', but the server serves",
    ),
]


@pytest.mark.parametrize(("name", "build", "reason"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_each_rejection_reason(
    settings: Settings, lora_template: Path, name: str, build: Breaker, reason: str
) -> None:
    folder = settings.adapters_dir / name
    build(folder, lora_template)
    with pytest.raises(InvalidAdapter) as info:
        validate_adapter_folder(folder, settings)
    assert reason in info.value.reason, info.value.reason


@pytest.mark.parametrize("name", ["..", "-x", "_x", "x y", "caf\u00e9", "x\n"])
def test_names_that_could_escape_the_adapters_dir_are_rejected(
    settings: Settings, name: str
) -> None:
    with pytest.raises(InvalidAdapter, match="folder name must match"):
        validate_adapter_folder(settings.adapters_dir / name, settings)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"rank": 32}, f"LoRA rank 32 exceeds the server's --max-lora-rank {MAX_RANK}"),
        ({"use_dora": True}, "DoRA adapters (use_dora) are not supported by vLLM"),
        ({"bias": "lora_only"}, "LoRA bias is not supported; train with bias='none'"),
        pytest.param(
            {"modules_to_save": ["lm_head"]},
            "modules_to_save ['lm_head'] is not supported",
            # PEFT warns that lm_head is tied to the embeddings; that is the point here.
            marks=pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`"),
        ),
    ],
    ids=["rank", "dora", "bias", "modules_to_save"],
)
def test_peft_variants_vllm_cannot_serve_are_rejected(
    settings: Settings, default_model_dir: Path, options: dict[str, Any], reason: str
) -> None:
    folder = peft_variant(settings.adapters_dir, "variant", default_model_dir, **options)
    with pytest.raises(InvalidAdapter) as info:
        validate_adapter_folder(folder, settings)
    assert reason in info.value.reason, info.value.reason


def test_valid_folders_and_their_lora_names(
    settings: Settings, lora_template: Path, default_model_dir: Path
) -> None:
    root = settings.adapters_dir
    spec = validate_adapter_folder(adapter(root, "notes", lora_template, version="2"), settings)
    assert spec.lora_name is not None and spec.lora_name.startswith("notes-v2-")
    # A trainer's copy of the base tokenizer is harmless: it adds no tokens.
    shutil.copy(default_model_dir / "tokenizer.json", root / "notes")
    shutil.copy(default_model_dir / "tokenizer_config.json", root / "notes")
    assert validate_adapter_folder(root / "notes", settings).lora_name == spec.lora_name
    # Past the 4 MB other files get: Gemma 3's tokenizer.json, a 262k-word vocabulary, is 33 MB.
    vocab = {f"{i:06d}{'x' * 200}": i for i in range(30_000)}
    (root / "notes" / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}}))
    assert (root / "notes" / "tokenizer.json").stat().st_size > 6 << 20
    assert validate_adapter_folder(root / "notes", settings).lora_name == spec.lora_name
    # The same weights under a new version, and new weights under the same version, both get
    # a new name: vLLM must never reuse a prefix cache across different weights.
    bumped = validate_adapter_folder(adapter(root, "notes", lora_template, version="3"), settings)
    assert bumped.lora_name is not None and bumped.lora_name.startswith("notes-v3-")
    retrained = adapter(root, "notes", lora_template, version="2", lora_alpha=3)
    assert validate_adapter_folder(retrained, settings).lora_name not in (spec.lora_name, None)
    plain = validate_adapter_folder(
        write_manifest(root / "plain", builtin_manifest("plain")), settings
    )
    assert plain.lora_name is None and not plain.has_weights


async def test_catalog_follows_the_folder_without_vllm(
    settings: Settings, lora_template: Path, redis: Redis
) -> None:
    """Prompt-only folders, rejections and removals need no model server."""
    root = settings.adapters_dir
    write_manifest(root / "plain", builtin_manifest("plain"))
    write_manifest(root / "broken", builtin_manifest("broken", colour="blue"))
    (root / "README.md").write_text("files next to the folders are ignored")
    (root / ".hidden").mkdir()
    pubsub = redis.pubsub()
    await pubsub.subscribe(names.SPECIALISTS_CHANNEL)
    async with ModelClient(settings, retries=0) as client:
        registry = Registry(redis, settings, client)
        changed = await registry.sync_once()
        assert {n: r.status for n, r in changed.items()} == {"broken": "rejected", "plain": "ready"}
        plain = await get_specialist(redis, "plain")
        assert plain is not None and plain.lora_name is None and plain.version == "0.1.0"
        assert plain.manifest is not None and plain.manifest.name == "plain"
        broken = await get_specialist(redis, "broken")
        assert broken is not None and "unknown key 'colour'" in (broken.reason or "")
        announced = {await _next_message(pubsub), await _next_message(pubsub)}
        assert announced == {b"plain", b"broken"}

        assert await registry.sync_once() == {}  # nothing changed, nothing republished
        await redis.flushdb()  # as if Redis had restarted without persistence
        assert set(await registry.sync_once()) == {"plain", "broken"}
        await _next_message(pubsub, skip=1)

        write_manifest(root / "broken", builtin_manifest("broken"))  # fixed
        (root / "plain" / "specialist.yaml").write_text("name: plain\n")  # broken
        changed = await registry.sync_once()
        assert {n: r.status for n, r in changed.items()} == {"broken": "ready", "plain": "rejected"}
        assert "specialist.yaml: version: Field required" in (changed["plain"].reason or "")

        shutil.rmtree(root / "plain")
        await registry.sync_once()
        assert [r.name for r in await list_specialists(redis)] == ["broken"]
        assert await _next_message(pubsub, skip=2) == b"plain"
    await pubsub.aclose()


async def test_a_lora_waits_while_vllm_is_down(
    settings: Settings, lora_template: Path, redis: Redis
) -> None:
    """vLLM being down is nobody's fault: the folder is retried, never marked rejected."""
    adapter(settings.adapters_dir, "notes", lora_template)
    async with ModelClient(settings, retries=0) as client:
        registry = Registry(redis, settings, client)
        assert await registry.sync_once() == {}
        assert await get_specialist(redis, "notes") is None
        assert await registry.sync_once() == {}  # tried again, still waiting


async def test_run_polls_until_stopped(settings: Settings, redis: Redis) -> None:
    async with ModelClient(settings, retries=0) as client:
        registry = Registry(redis, settings, client, poll_s=0.1)
        task = asyncio.create_task(registry.run())
        write_manifest(settings.adapters_dir / "late", builtin_manifest("late"))
        for _ in range(100):
            if await get_specialist(redis, "late"):
                break
            await asyncio.sleep(0.05)
        assert (await get_specialist(redis, "late")) is not None
        registry.stop()
        await asyncio.wait_for(task, timeout=5)


async def _next_message(pubsub: Any, *, skip: int = 0) -> bytes:
    """The next published payload on the channel, after skipping ``skip`` of them."""
    seen = 0
    for _ in range(200):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
        if message is None:
            continue
        if seen == skip:
            return bytes(message["data"])
        seen += 1
    raise AssertionError("no message published")


# Against a real vLLM server.


@pytest.fixture
async def live_registry(vllm_server: VllmServer, redis: Redis) -> AsyncIterator[Registry]:
    for child in vllm_server.adapters_dir.iterdir():
        shutil.rmtree(child)
    async with ModelClient(vllm_server.settings) as client:
        for model in await client.list_models():
            if model != vllm_server.served_base:
                await client.unload_adapter(model)
        yield Registry(redis, vllm_server.settings, client, unload_grace_s=0)


async def served(settings: Settings) -> list[str]:
    async with ModelClient(settings) as client:
        return await client.list_models()


@pytest.mark.slow
async def test_dropped_folder_is_served_then_replaced_then_removed(
    live_registry: Registry, vllm_server: VllmServer, lora_template: Path, redis: Redis
) -> None:
    root, settings = vllm_server.adapters_dir, vllm_server.settings
    adapter(root, "notes", lora_template, version="1")
    write_manifest(root / "plain", builtin_manifest("plain"))  # prompt-only
    changed = await live_registry.sync_once()
    assert {n: r.status for n, r in changed.items()} == {"notes": "ready", "plain": "ready"}
    first = await get_specialist(redis, "notes")
    assert first is not None and first.version == "1" and first.lora_name
    assert first.lora_name.startswith("notes-v1-") and first.lora_name in await served(settings)

    async with ModelClient(settings) as client:
        # Random LoRA weights speak nonsense; the schema still holds them to valid JSON.
        result = await client.chat(
            first.lora_name,
            [{"role": "user", "content": "Acme opened an office in Paris."}],
            output_schema={
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 12}},
                "required": ["city"],
                "additionalProperties": False,
            },
            max_tokens=48,
        )
    assert result.model == first.lora_name and isinstance(result.json["city"], str)

    assert await live_registry.sync_once() == {}  # nothing changed, nothing reloaded

    # A restarted registry finds its adapters still served and leaves them as they are.
    async with ModelClient(settings) as client:
        fresh = await Registry(redis, settings, client).sync_once()
    assert fresh["notes"].lora_name == first.lora_name

    async with ModelClient(settings) as client:
        await client.unload_adapter(first.lora_name)  # as if vLLM had restarted
    await live_registry.sync_once()
    assert first.lora_name in await served(settings)

    adapter(root, "notes", lora_template, version="2")
    live_registry.unload_grace_s = 1.0  # readers that cached the v1 record may still ask for it
    changed = await live_registry.sync_once()
    second = changed["notes"]
    assert second.version == "2" and second.lora_name and second.lora_name.startswith("notes-v2-")
    assert {first.lora_name, second.lora_name} <= set(await served(settings))
    await asyncio.sleep(1.1)
    live_registry.unload_grace_s = 0
    await live_registry.sync_once()
    models = await served(settings)
    assert second.lora_name in models and first.lora_name not in models
    assert await get_specialist(redis, "notes") == second

    shutil.rmtree(root / "notes")
    await live_registry.sync_once()
    assert await get_specialist(redis, "notes") is None
    assert second.lora_name not in await served(settings)
    assert [r.name for r in await list_specialists(redis)] == ["plain"]


@pytest.mark.slow
async def test_weights_vllm_refuses_are_rejected_and_the_old_version_unloaded(
    live_registry: Registry, vllm_server: VllmServer, lora_template: Path, redis: Redis
) -> None:
    root = vllm_server.adapters_dir
    adapter(root, "notes", lora_template, version="1")
    first = (await live_registry.sync_once())["notes"]
    # Header intact, data cut short: only loading the tensors finds out.
    folder = adapter(root, "notes", lora_template, version="2")
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    record = (await live_registry.sync_once())["notes"]
    assert record.status == "rejected" and "vLLM could not load it" in (record.reason or "")
    assert first.lora_name not in await served(vllm_server.settings)


def test_a_folder_linked_to_the_root_costs_one_look(tmp_path: Path) -> None:
    import time

    from specialists.folders import fingerprint

    (tmp_path / "root").symlink_to("/")
    started = time.perf_counter()
    first = fingerprint(tmp_path / "root")
    assert time.perf_counter() - started < 0.1
    assert first == fingerprint(tmp_path / "root")
