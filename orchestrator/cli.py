"""``swarm orchestrator`` (registered through the ``swarm.commands`` entry point group)."""

from __future__ import annotations

import asyncio

from swarm.settings import get_settings, setup_observability


def orchestrator() -> None:
    """Plan tasks and walk them through their specialists (run as many as you like)."""
    from orchestrator.runner import run_orchestrator

    settings = get_settings()
    setup_observability(settings, "swarm-orchestrator")
    asyncio.run(run_orchestrator(settings))
