"""The adapter registry: watches ``adapters/``, validates each folder, serves it, publishes it.

A folder is a specialist: a manifest (``specialist.yaml``) and, optionally, PEFT LoRA weights.
On a new or changed folder the registry validates it, snapshots the weights, loads them into
vLLM under a name unique to the version and the weights' content, switches the catalog to it,
and then unloads the previous version. A removed folder is unloaded and unregistered. A bad
folder never crashes anything: it is published with status ``rejected`` and the reason. A
replaced or removed LoRA stays loaded for a short grace (``UNLOAD_GRACE_S``), so a step that
read the old record a moment ago still finds it.

Why content-addressed names and snapshots: vLLM keys its prefix cache by LoRA name and does not
invalidate it when an adapter is reloaded in place, and it may read an adapter's files again
whenever it evicts it from its CPU cache. So every distinct set of weights gets its own name,
``<name>-v<version>-<digest>``, and vLLM reads it from an immutable copy under
``$SWARM_HOME/loras/<lora name>``, never from the folder a person may be editing. A restarted
registry finds the names it loaded still served and leaves them be; a restarted vLLM has
forgotten them, and the registry loads them again on its next pass.

The catalog itself (:class:`~swarm.catalog.SpecialistRecord`, ``list_specialists``,
``get_specialist``) lives in :mod:`swarm.catalog`, so readers need not import this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path

from specialists.folders import (
    AdapterSpec,
    FolderChanged,
    fingerprint,
    snapshot,
    snapshots_dir,
    validate_adapter_folder,
)
from swarm.catalog import (
    CatalogCache,
    SpecialistRecord,
    get_specialist,
    list_specialists,
    put_specialist,
    remove_specialist,
)
from swarm.connections import OUTAGE_ERRORS, Outage, RedisClient
from swarm.errors import InfrastructureError, InvalidAdapter, SwarmError
from swarm.serving.modelclient import ModelClient
from swarm.settings import Settings

log = logging.getLogger(__name__)

MIN_POLL_S = 0.1
MAX_POLL_S = 60.0
UNLOAD_GRACE_S = 5.0
"""How long a replaced or removed LoRA stays loaded: readers cache the catalog for about a
second (``swarm.catalog.CatalogCache``), and a step that read the old record must still find
its LoRA when its request reaches vLLM."""


class Registry:
    """Keeps vLLM and the Redis catalog in step with the adapters dir.

    One registry per adapters dir: it is the catalog's only writer.
    """

    def __init__(
        self,
        redis: RedisClient,
        settings: Settings,
        client: ModelClient,
        *,
        poll_s: float = 1.0,
        unload_grace_s: float = UNLOAD_GRACE_S,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.client = client
        self.catalog = CatalogCache(redis)
        """Read afresh on every pass; it spares re-validating the manifests that did not change."""
        self.poll_s = min(max(poll_s, MIN_POLL_S), MAX_POLL_S)
        self.unload_grace_s = max(unload_grace_s, 0.0)
        self._seen: dict[str, str] = {}
        """Folder name -> fingerprint of the files last registered (ready or rejected)."""
        self._retiring: dict[str, float] = {}
        """LoRA name -> when (monotonic) to unload it, once no record points to it."""
        self._stopping = asyncio.Event()

    async def sync_once(self) -> dict[str, SpecialistRecord]:
        """One pass over the adapters dir; returns the records published in this pass.

        A folder whose load failed for a passing reason (vLLM down) is not marked as seen, so
        the next pass tries again; its previous record, if any, stays as it was.
        """
        folders = await asyncio.to_thread(self._scan)
        registered = dict(await self.catalog.fresh())
        changed: dict[str, SpecialistRecord] = {}
        for name, (folder, mark) in sorted(folders.items()):
            if self._seen.get(name) == mark and name in registered:
                continue  # unchanged, and still published (Redis may have lost it: republish)
            record = await self._register(folder, registered.get(name))
            if record is not None:
                self._seen[name] = mark
                changed[name] = record
        for name in sorted(set(registered) | set(self._seen)):
            if name not in folders:
                await self._unregister(name, registered.get(name))
        await self._reload_lost()
        await self._unload_retired()
        return changed

    def _scan(self) -> dict[str, tuple[Path, str]]:
        """Each adapter folder with its fingerprint (file I/O, so run in a thread)."""
        root = self.settings.adapters_dir
        if not root.is_dir():
            return {}
        return {
            p.name: (p.absolute(), fingerprint(p))
            for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".")
        }

    async def _register(
        self, folder: Path, previous: SpecialistRecord | None
    ) -> SpecialistRecord | None:
        name = folder.name
        try:
            spec = await asyncio.to_thread(validate_adapter_folder, folder, self.settings)
            if spec.lora_name is not None:
                await self._ensure_loaded(spec)
        except InvalidAdapter as exc:
            return await self._reject(name, exc.reason, previous)
        except (InfrastructureError, FolderChanged) as exc:
            log.warning("adapter %s not registered yet (will retry): %s", name, exc)
            return None
        except SwarmError as exc:
            return await self._reject(name, str(exc), previous)
        except Exception as exc:  # an unreadable folder must not stop the other folders
            return await self._reject(name, f"cannot read the folder: {exc!r}", previous)
        record = SpecialistRecord(
            name=spec.name,
            version=spec.manifest.version,
            status="ready",
            description=spec.manifest.description,
            lora_name=spec.lora_name,
            manifest=spec.manifest,
            eval_summary=spec.eval_summary,
        )
        await put_specialist(self.redis, record)
        if previous is not None and previous.lora_name not in (None, record.lora_name):
            self._retire(previous.lora_name)
        log.info(
            "adapter %s v%s ready (%s)", name, record.version, record.lora_name or "prompt-only"
        )
        return record

    async def _reject(
        self, name: str, reason: str, previous: SpecialistRecord | None
    ) -> SpecialistRecord:
        record = SpecialistRecord(name=name, status="rejected", reason=reason)
        log.warning("adapter %s rejected: %s", name, reason)
        await put_specialist(self.redis, record)
        if previous is not None and previous.lora_name:
            self._retire(previous.lora_name)  # nobody may use the old version any more
        return record

    async def _ensure_loaded(self, spec: AdapterSpec) -> None:
        """Load the spec's weights unless vLLM already serves them under their name."""
        assert spec.lora_name is not None
        if spec.lora_name in await self.client.list_models():
            return
        path = await asyncio.to_thread(snapshot, spec, self.settings)
        await self.client.load_adapter(spec.lora_name, str(path))

    async def _reload_lost(self) -> None:
        """A restarted vLLM has forgotten runtime-loaded adapters: load them again."""
        wanted = {
            r.lora_name: r.name
            for r in (await self.catalog.fresh()).values()
            if r.ready and r.lora_name
        }
        if not wanted:
            return
        try:
            served = set(await self.client.list_models())
            for lora, name in wanted.items():
                if lora in served:
                    continue
                path = snapshots_dir(self.settings) / lora
                if path.is_dir():
                    log.info("vLLM lost %s; loading it again", lora)
                    await self.client.load_adapter(lora, str(path))
                else:
                    self._seen.pop(name, None)  # the snapshot is gone: register from scratch
        except SwarmError as exc:
            log.warning("could not restore vLLM's adapters: %s", exc)

    async def _unregister(self, name: str, record: SpecialistRecord | None) -> None:
        await remove_specialist(self.redis, name)
        if record is not None and record.lora_name:
            self._retire(record.lora_name)
        self._seen.pop(name, None)
        log.info("adapter %s removed", name)

    def _retire(self, lora: str) -> None:
        self._retiring.setdefault(lora, time.monotonic() + self.unload_grace_s)

    async def _unload_retired(self) -> None:
        """Unload retired LoRAs whose grace has passed, unless a record uses them again."""
        now = time.monotonic()
        due = [lora for lora, at in self._retiring.items() if at <= now]
        if not due:
            return
        in_use = {r.lora_name for r in (await self.catalog.fresh()).values() if r.ready}
        for lora in due:
            del self._retiring[lora]
            if lora not in in_use:
                await self._unload(lora)

    async def _unload(self, lora: str) -> None:
        try:
            await self.client.unload_adapter(lora)
        except SwarmError as exc:
            log.warning("could not unload %s: %s", lora, exc)
            return
        await asyncio.to_thread(shutil.rmtree, snapshots_dir(self.settings) / lora, True)

    async def run(self) -> None:
        """Poll the adapters dir every ``poll_s`` until :meth:`stop`."""
        outage = Outage("registry")
        while not self._stopping.is_set():
            try:
                await self.sync_once()
                outage.over()
            except OUTAGE_ERRORS as exc:
                await outage.wait(exc)
                continue
            except Exception:
                log.exception("registry pass failed; retrying in %.1fs", self.poll_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.poll_s)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current pass."""
        self._stopping.set()


async def run_registry(settings: Settings) -> None:
    """``swarm registry``: watch the adapters dir until SIGINT or SIGTERM."""
    from swarm.connections import connect_when_up
    from swarm.eventloop import run_service

    redis = await connect_when_up(
        settings.redis_url, "registry", max_connections=settings.redis_max_connections
    )
    client = ModelClient(settings)
    registry = Registry(redis, settings, client)
    await run_service(registry, client, redis)


__all__ = ["Registry", "get_specialist", "list_specialists", "run_registry"]
