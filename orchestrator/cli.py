"""``swarm orchestrator`` (registered through the ``swarm.commands`` entry point group)."""

from __future__ import annotations

import asyncio
import logging
import sys

from swarm.settings import get_settings


def orchestrator() -> None:
    """Plan tasks and walk them through their specialists (run as many as you like)."""
    from orchestrator.runner import run_orchestrator

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr)
    asyncio.run(run_orchestrator(settings))
