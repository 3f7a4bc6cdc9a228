"""How swarm's long-running processes run: their event loop, signals and shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a service's main coroutine on uvloop where it is installed, else on asyncio's loop.

    uvloop ships with ``uvicorn[standard]``, a dependency. Its transports and scheduling cost
    far less CPU per message than asyncio's own, and a worker or orchestrator does little else.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


class Service(Protocol):
    """A role's main object: the orchestrator, a worker, the registry."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class Closable(Protocol):
    async def aclose(self) -> None: ...


async def run_service(service: Service, *closing: Closable | None) -> None:
    """Run ``service`` until it returns; SIGINT or SIGTERM asks it to stop. Then close
    ``closing`` in order (its clients, Redis last), whatever happened."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    try:
        await service.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for resource in closing:
            if resource is not None:
                await resource.aclose()
