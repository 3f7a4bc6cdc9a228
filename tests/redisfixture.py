"""Real-Redis fixtures: every test gets a flushed database on a real server.

``SWARM_TEST_REDIS_URL`` picks the server and database (default: local DB 15, so a developer's
data in DB 0 is never touched).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from swarm.settings import Settings

TEST_REDIS_URL = os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(TEST_REDIS_URL, decode_responses=False)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
def bus_settings() -> Settings:
    """Settings with short timeouts so crash-recovery tests run in seconds."""
    return Settings(
        redis_url=TEST_REDIS_URL,
        heartbeat_timeout_s=1.5,
        max_deliveries=3,
        consumer_concurrency=8,
    )
