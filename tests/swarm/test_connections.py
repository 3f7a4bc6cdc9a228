"""Opening Redis: a single server, a Redis Cluster behind a plain node URL, and bad URLs."""

from __future__ import annotations

import inspect

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import MovedError

from swarm import names
from swarm.connections import connect, is_cluster_node, redis_client, shown
from swarm.doctor import check_redis
from swarm.errors import ConfigurationError, RedisUnavailable
from swarm.settings import Settings
from swarm.stack import redis_problem

from conftest import free_port
from redisfixture import TEST_REDIS_URL, LocalCluster


def every_name() -> list[str]:
    """Every key, stream, group and channel name ``swarm.names`` defines, with sample ids."""
    found = []
    for attr, value in vars(names).items():
        if isinstance(value, str) and value.startswith(names.PREFIX):
            found.append(value)
        elif inspect.isfunction(value) and value.__module__ == names.__name__:
            if attr.startswith("_"):
                continue
            params = inspect.signature(value).parameters
            args = [names.steps_stream("sql") if p == "stream" else f"x-{p}" for p in params]
            found.append(value(*args))
    return found


def test_every_swarm_name_lives_in_one_hash_slot() -> None:
    found = every_name()
    assert len(found) > 20
    assert names.TASKS_STREAM in found and names.task_key("x-task_id") in found
    # Cluster's own slot function, which hashes only the first {...} of a key.
    assert {key_slot(name.encode()) for name in found} == {key_slot(b"swarm")}, found
    # Nested names stay distinct, so one stream's dedupe keys never collide with another's.
    assert names.published_key(names.TASKS_STREAM, "m1") != names.published_key(
        names.RESULTS_STREAM, "m1"
    )


async def test_a_single_server_gets_a_single_server_client() -> None:
    client = await connect(TEST_REDIS_URL)
    try:
        if isinstance(client, RedisCluster):
            pytest.skip("SWARM_TEST_REDIS_URL names a Redis Cluster")
        assert isinstance(client, Redis) and not await is_cluster_node(client)
    finally:
        await client.aclose()


async def test_a_node_url_opens_a_cluster_client_that_follows_redirects(
    local_cluster: LocalCluster,
) -> None:
    key = names.task_key("redirected")
    plain = sync_redis.Redis.from_url(local_cluster.url)
    with pytest.raises(MovedError):
        plain.set(key, b"1")  # the node in the URL does not own swarm's slot
    plain.close()

    client = await connect(local_cluster.url)
    try:
        assert isinstance(client, RedisCluster)
        await client.set(key, b"1", ex=60)
        owner = sync_redis.Redis(port=local_cluster.swarm_port)
        assert owner.get(key) == b"1"
        owner.delete(key)
        owner.close()
    finally:
        await client.aclose()


async def test_the_cluster_scheme_asks_for_a_cluster_client(local_cluster: LocalCluster) -> None:
    client = await connect(local_cluster.url.replace("redis://", "redis+cluster://"))
    try:
        assert isinstance(client, RedisCluster)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_cluster_url_with_a_database_is_refused(local_cluster: LocalCluster) -> None:
    with pytest.raises(ConfigurationError, match="only database 0"):
        redis_client("redis+cluster://127.0.0.1:7000/15")
    with pytest.raises(ConfigurationError, match="only database 0"):
        await connect(f"{local_cluster.url}/15")  # found out to be a cluster, then refused


async def test_an_unreachable_redis_is_redis_unavailable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailable, match=f"cannot reach Redis at {url}"):
        await connect(url)


async def test_doctor_and_swarm_up_know_a_cluster(local_cluster: LocalCluster) -> None:
    check = await check_redis(Settings(redis_url=local_cluster.url))
    assert check.ok and check.detail.startswith("Redis Cluster 7."), check
    assert redis_problem(local_cluster.url.replace("redis://", "redis+cluster://")) is None
    check = await check_redis(Settings(redis_url=f"{local_cluster.url}/3"))
    assert not check.ok and "only database 0" in check.detail


def test_urls_in_messages_hide_the_password() -> None:
    assert shown("rediss://app:s3cret@redis.example.com:6380/0") == (
        "rediss://app:***@redis.example.com:6380/0"
    )
    assert shown("redis://127.0.0.1:6379/15") == "redis://127.0.0.1:6379/15"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://host:6379/0?password=pw&db=1", "redis://host:6379/0?password=***&db=1"),
        ("http://vllm:8000/v1?api_key=k&x", "http://vllm:8000/v1?api_key=***&x"),
        ("http://vllm:8000/v1?keyword=k", "http://vllm:8000/v1?keyword=k"),  # not a secret's name
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_shown_masks_every_secret_in_a_url(url: str, masked: str) -> None:
    assert shown(url) == masked


async def test_a_bounded_pool_makes_a_command_wait_for_a_free_connection() -> None:
    import asyncio
    import time

    from redisfixture import TEST_REDIS_URL

    client = redis_client(TEST_REDIS_URL, max_connections=2)
    try:
        started = time.monotonic()

        async def blocked_read() -> None:
            await client.xread({"swarm-test:nothing": "$"}, block=600)

        await asyncio.gather(blocked_read(), blocked_read(), client.ping())
        # Both connections were held by the blocking reads: the PING waited for one.
        assert time.monotonic() - started >= 0.5
        assert client.connection_pool.max_connections == 2  # type: ignore[union-attr]
    finally:
        await client.aclose()


def test_every_client_retries_a_lost_connection_with_capped_jittered_backoff() -> None:
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import BusyLoadingError

    from swarm.connections import CALL_RETRIES

    retry = redis_client("redis://127.0.0.1:6379/0").get_retry()
    assert retry is not None and retry._retries == CALL_RETRIES
    assert isinstance(retry._backoff, ExponentialWithJitterBackoff)
    assert all(retry._backoff.compute(n) <= 1.0 for n in range(20))  # capped
    assert isinstance(BusyLoadingError(), retry._supported_errors)  # Redis replaying its AOF
