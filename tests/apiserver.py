"""Runs the real API app under uvicorn in a thread, on a free port, for tests and benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from redis.asyncio import Redis
from starlette.types import ASGIApp

from specialists.builtin import BUILTINS
from swarm.catalog import SpecialistRecord, put_specialist
from swarm.http.app import create_app
from swarm.settings import Settings

from adapterfactory import register_builtins


async def put_builtins(redis: Redis) -> None:
    """The built-in specialists in the catalog, ready (the sql one with an eval summary), and
    one rejected folder ("broken")."""
    await register_builtins(redis)
    sql = BUILTINS["sql"]
    await put_specialist(
        redis,
        SpecialistRecord(
            name="sql", version=sql.manifest.version, status="ready",
            description=sql.manifest.description, manifest=sql.manifest,
            eval_summary={"exact_match": 0.9},
        ),
    )  # fmt: skip
    await put_specialist(
        redis, SpecialistRecord(name="broken", status="rejected", reason="LoRA rank 128 too big")
    )


@contextmanager
def api_server(settings: Settings, port: int) -> Iterator[str]:
    """The API app for ``settings`` on ``port``."""
    with serve_app(create_app(settings), port) as url:
        yield url


@contextmanager
def serve_app(app: ASGIApp, port: int) -> Iterator[str]:
    """Any ASGI app under uvicorn in a thread on ``port``, until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
