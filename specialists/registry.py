"""The adapter registry: watches ``adapters/``, validates each folder, serves it, publishes it.

A folder is a specialist: a manifest (``specialist.yaml``) and, optionally, PEFT LoRA weights.
On a new or changed folder the registry validates it, loads the weights into vLLM under a name
unique to the version (vLLM keys its prefix cache by LoRA name and does not invalidate it on an
in-place reload), unloads the previous version, and publishes the record to Redis, where every
process sees it within a poll interval. A removed folder is unloaded and unregistered. A bad
folder never crashes anything: it is published with status ``rejected`` and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from specialists.manifest import NAME_PATTERN, Manifest, load_manifest
from swarm.basemodel import base_model_aliases
from swarm.catalog import SpecialistRecord, list_specialists, put_specialist, remove_specialist
from swarm.errors import InvalidAdapter, SwarmError
from swarm.modelclient import ModelClient
from swarm.settings import Settings

log = logging.getLogger(__name__)

WEIGHT_FILES = ("adapter_config.json", "adapter_model.safetensors")
TOKENIZER_FILES = ("added_tokens.json", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class AdapterSpec:
    """A validated adapter folder."""

    folder: Path
    manifest: Manifest
    has_weights: bool
    eval_summary: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def lora_name(self) -> str | None:
        """The versioned name vLLM serves these weights under; None for prompt-only."""
        return f"{self.name}-v{self.manifest.version}" if self.has_weights else None


def validate_adapter_folder(folder: Path, settings: Settings) -> AdapterSpec:
    """Check a folder against the adapter contract; InvalidAdapter names the first problem."""
    name = folder.name
    if not NAME_PATTERN.match(name):
        raise InvalidAdapter(name, f"folder name must match {NAME_PATTERN.pattern}")
    manifest = load_manifest(folder)
    present = [f for f in WEIGHT_FILES if (folder / f).is_file()]
    if present and len(present) < len(WEIGHT_FILES):
        missing = next(f for f in WEIGHT_FILES if f not in present)
        raise InvalidAdapter(name, f"LoRA weights are incomplete: {missing} is missing")
    if present:
        _check_lora_config(name, folder, settings)
    return AdapterSpec(folder, manifest, bool(present), _eval_summary(folder))


def _check_lora_config(name: str, folder: Path, settings: Settings) -> None:
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except ValueError as exc:
        raise InvalidAdapter(name, f"adapter_config.json is not valid JSON: {exc}") from exc
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        raise InvalidAdapter(name, f"peft_type is {peft_type!r}; only LORA adapters are served")
    rank = int(config.get("r", 0))
    ranks = [rank, *(int(r) for r in (config.get("rank_pattern") or {}).values())]
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
    if config.get("trainable_token_indices") or any((folder / f).exists() for f in TOKENIZER_FILES):
        raise InvalidAdapter(
            name, "the adapter adds tokens (tokenizer files or trainable tokens); not supported"
        )
    base = config.get("base_model_name_or_path")
    aliases = base_model_aliases(settings)
    if base not in aliases:
        raise InvalidAdapter(
            name,
            f"trained on base model {base!r}, but the server serves {settings.base_model!r} "
            f"(accepted: {', '.join(sorted(aliases))})",
        )


def _eval_summary(folder: Path) -> dict[str, Any] | None:
    path = folder / "eval.json"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    return None


def fingerprint(folder: Path) -> str:
    """Changes when any file in the folder is added, removed, resized or touched."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


class Registry:
    """Keeps vLLM and the Redis catalog in step with the adapters dir."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        client: ModelClient,
        *,
        poll_s: float = 1.0,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.client = client
        self.poll_s = poll_s
        self._seen: dict[str, str] = {}
        self._stopping = asyncio.Event()

    async def sync_once(self) -> dict[str, SpecialistRecord]:
        """One pass over the adapters dir; returns the records that changed."""
        folders = await asyncio.to_thread(self._scan)
        changed: dict[str, SpecialistRecord] = {}
        for name, (folder, mark) in sorted(folders.items()):
            if self._seen.get(name) == mark:
                continue
            record = await self._register(folder)
            self._seen[name] = mark
            changed[name] = record
        registered = {r.name: r for r in await list_specialists(self.redis)}
        for name in set(registered) | set(self._seen):
            if name not in folders:
                await self._unregister(name, registered.get(name))
        await self._reload_lost(registered, folders)
        return changed

    async def _reload_lost(
        self, registered: dict[str, SpecialistRecord], folders: dict[str, tuple[Path, str]]
    ) -> None:
        """A restarted vLLM has forgotten runtime-loaded adapters: load them again."""
        wanted = {
            r.lora_name: folders[r.name][0]
            for r in registered.values()
            if r.ready and r.lora_name and r.name in folders
        }
        if not wanted:
            return
        try:
            served = set(await self.client.list_models())
            for lora_name, folder in wanted.items():
                if lora_name not in served:
                    log.info("reloading %s into vLLM", lora_name)
                    await self.client.load_adapter(lora_name, str(folder))
        except SwarmError as exc:
            log.warning("could not check vLLM's adapters: %s", exc)

    def _scan(self) -> dict[str, tuple[Path, str]]:
        """Each adapter folder with its fingerprint (file I/O, so run in a thread)."""
        root = self.settings.adapters_dir
        if not root.is_dir():
            return {}
        return {
            p.name: (p.resolve(), fingerprint(p))
            for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".")
        }

    async def _register(self, folder: Path) -> SpecialistRecord:
        name = folder.name
        previous = await _get(self.redis, name)
        try:
            spec = await asyncio.to_thread(validate_adapter_folder, folder, self.settings)
            if spec.lora_name is not None:
                await self.client.load_adapter(spec.lora_name, str(folder))
        except SwarmError as exc:
            reason = exc.reason if isinstance(exc, InvalidAdapter) else str(exc)
            record = SpecialistRecord(name=name, status="rejected", reason=reason)
            log.warning("adapter %s rejected: %s", name, reason)
            await put_specialist(self.redis, record)
            return record
        record = SpecialistRecord(
            name=spec.name,
            version=spec.manifest.version,
            status="ready",
            description=spec.manifest.description,
            lora_name=spec.lora_name,
            manifest=spec.manifest.model_dump(mode="json"),
            eval_summary=spec.eval_summary,
        )
        await put_specialist(self.redis, record)
        if previous and previous.lora_name and previous.lora_name != record.lora_name:
            await self._unload(previous.lora_name)
        log.info(
            "adapter %s v%s ready (%s)", name, record.version, record.lora_name or "prompt-only"
        )
        return record

    async def _unregister(self, name: str, record: SpecialistRecord | None) -> None:
        if record is not None and record.lora_name:
            await self._unload(record.lora_name)
        await remove_specialist(self.redis, name)
        self._seen.pop(name, None)
        log.info("adapter %s removed", name)

    async def _unload(self, lora_name: str) -> None:
        try:
            await self.client.unload_adapter(lora_name)
        except SwarmError as exc:
            log.warning("could not unload %s: %s", lora_name, exc)

    async def run(self) -> None:
        """Poll the adapters dir until ``stop()``."""
        while not self._stopping.is_set():
            try:
                await self.sync_once()
            except Exception:
                log.exception("registry pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.poll_s)

    def stop(self) -> None:
        self._stopping.set()


async def _get(redis: Redis, name: str) -> SpecialistRecord | None:
    from swarm.catalog import get_specialist

    return await get_specialist(redis, name)


async def run_registry(settings: Settings) -> None:
    """``swarm registry``: watch the adapters dir until SIGINT or SIGTERM."""
    import signal

    from swarm.bus import connect

    redis = await connect(settings.redis_url)
    client = ModelClient(settings)
    registry = Registry(redis, settings, client)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, registry.stop)
    try:
        await registry.run()
    finally:
        await client.aclose()
        await redis.aclose()
