"""``swarm worker`` and ``swarm registry`` (registered through ``swarm.commands``)."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer

from swarm.settings import get_settings


def worker(
    specialist: list[str] = typer.Option(
        None, "--specialist", "-s", help="Serve only these specialists (repeatable); default all."
    ),
) -> None:
    """Run specialist steps: prompt, call vLLM with the adapter and schema, validate, reply."""
    from specialists.worker import run_worker

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr)
    asyncio.run(run_worker(settings, specialist or None))


def registry() -> None:
    """Watch the adapters dir: validate, load into vLLM and publish each specialist."""
    from specialists.registry import run_registry

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr)
    asyncio.run(run_registry(settings))
