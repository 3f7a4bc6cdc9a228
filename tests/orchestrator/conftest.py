"""Fixtures for the orchestrator tests; the helpers they use live in ``taskdriver``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from orchestrator.planner import Planner, RulePlanner
from orchestrator.runner import Orchestrator

# Test modules here import their helpers by name, as tests/ modules import openaistub. Appended,
# not prepended: ``conftest`` must still resolve to tests/conftest.py for every test directory.
sys.path.append(str(Path(__file__).parent))

from taskdriver import ENTITIES, PII, SETTINGS, SQL, Driver, Start


@pytest.fixture
async def driver(redis: Redis) -> Driver:
    drive = Driver(redis)
    await drive.register(PII, ENTITIES, SQL)
    return drive


@pytest.fixture
async def start_orchestrator(redis: Redis) -> AsyncIterator[Start]:
    """Starts orchestrators on the test database; all are closed at the end of the test."""
    running: list[Orchestrator] = []

    def start(planner: Planner | None = None, **options: Any) -> Orchestrator:
        options.setdefault("sweep_interval_s", 0.1)
        orchestrator = Orchestrator(redis, SETTINGS, planner or RulePlanner(), **options)
        orchestrator.start()
        running.append(orchestrator)
        return orchestrator

    yield start
    for orchestrator in running:
        await orchestrator.close()
