"""``swarm orchestrator`` (registered through the ``swarm.commands`` entry point group)."""

from __future__ import annotations

from swarm import eventloop
from swarm.settings import get_settings, setup_observability


def orchestrator() -> None:
    """Plan tasks and walk them through their specialists (run as many as you like)."""
    from orchestrator.runner import run_orchestrator

    settings = get_settings()
    setup_observability(settings, "swarm-orchestrator")
    eventloop.run(run_orchestrator(settings))
