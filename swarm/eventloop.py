"""How swarm's long-running processes run their event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

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
