"""Real-Redis fixtures: every test gets a flushed database on a real server.

``SWARM_TEST_REDIS_URL`` picks the server and database (default: local DB 15, so a developer's
data in DB 0 is never touched). It may name a Redis Cluster too (``redis+cluster://host:port``),
and then the whole suite runs on that cluster.

Tests marked ``redis_backends`` run twice: on that server, and on a three-node Redis Cluster
that the session starts from the local ``redis-server`` binary (``LocalCluster``). Such tests
take the server's URL from the ``redis_url`` fixture, never from ``TEST_REDIS_URL``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as sync_redis
from redis.crc import key_slot

from swarm import names
from swarm.connections import RedisClient, connect
from swarm.settings import Settings

from ports import free_port

TEST_REDIS_URL = os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CLUSTER_NODES = 3
CLUSTER_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LocalCluster:
    """A Redis Cluster of ``CLUSTER_NODES`` primaries on 127.0.0.1, slots split evenly."""

    ports: list[int]
    swarm_port: int
    """The node that owns the ``{swarm}`` hash slot, where all of swarm's keys live."""

    @property
    def url(self) -> str:
        """A plain URL of a node that does not own swarm's slot, so every call must follow
        the cluster's redirects: what a user copying one node's address would write."""
        other = next(p for p in self.ports if p != self.swarm_port)
        return f"redis://127.0.0.1:{other}"


def start_cluster(workdir: Path) -> Iterator[LocalCluster]:
    """Start the nodes, hand out the slots, join them, and stop them all afterwards."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed, so no local Redis Cluster can start")
    ports = [free_port() for _ in range(CLUSTER_NODES)]
    processes = []
    try:
        for port in ports:
            processes.append(
                subprocess.Popen(
                    [
                        server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        str(free_port()),
                        "--cluster-config-file",
                        f"nodes-{port}.conf",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(workdir),
                        "--logfile",
                        str(workdir / f"redis-{port}.log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        clients = [sync_redis.Redis(port=p, socket_timeout=5) for p in ports]
        _wait(lambda: all(_pings(c) for c in clients), "the cluster's nodes to start")
        per_node = 16384 // CLUSTER_NODES
        slots = [
            (i * per_node, 16383 if i == CLUSTER_NODES - 1 else (i + 1) * per_node - 1)
            for i in range(CLUSTER_NODES)
        ]
        for client, (first, last) in zip(clients, slots, strict=True):
            client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
        bus_ports = [int(c.config_get("cluster-port")["cluster-port"]) for c in clients]
        for port, bus_port in zip(ports[1:], bus_ports[1:], strict=True):
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port, bus_port)
        _wait(lambda: all(_cluster_ok(c) for c in clients), "the cluster to form")
        slot = key_slot(names.PREFIX.encode())
        owner = next(
            port for port, (first, last) in zip(ports, slots, strict=True) if first <= slot <= last
        )
        for client in clients:
            client.close()
        yield LocalCluster(ports, owner)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def _pings(client: sync_redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except sync_redis.RedisError:
        return False


def _cluster_ok(client: sync_redis.Redis) -> bool:
    info = client.cluster("INFO")  # parsed by redis-py into a dict of strings
    return info.get("cluster_state") == "ok" and int(info["cluster_known_nodes"]) == CLUSTER_NODES


def _wait(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CLUSTER_START_TIMEOUT_S
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_cluster(tmp_path_factory.mktemp("redis-cluster"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("redis_backends") is None:
        return
    if "redis_url" in metafunc.fixturenames:
        metafunc.parametrize("redis_url", ["server", "cluster"], indirect=True)


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of the Redis this test runs on (see the module docstring)."""
    if getattr(request, "param", "server") == "cluster":
        cluster: LocalCluster = request.getfixturevalue("local_cluster")
        return cluster.url
    return TEST_REDIS_URL


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisClient]:
    client = await connect(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
def bus_settings(redis_url: str) -> Settings:
    """Settings with short timeouts so crash-recovery tests run in seconds."""
    return Settings(
        redis_url=redis_url,
        heartbeat_timeout_s=1.5,
        max_deliveries=3,
        consumer_concurrency=8,
    )
