"""Runs the real API app under uvicorn in a thread, on a free port, for tests and benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from swarm.api import ApiLimits, create_app
from swarm.settings import Settings


@contextmanager
def api_server(settings: Settings, port: int, limits: ApiLimits | None = None) -> Iterator[str]:
    """The API app for ``settings`` (and ``limits``, if given) on ``port``."""
    with serve_app(create_app(settings, limits=limits), port) as url:
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
