"""Redis connections: one way to open a client, for a single server or a Redis Cluster.

``SWARM_REDIS_URL`` picks the server. A ``redis://`` or ``rediss://`` URL that points at a
Cluster node is noticed when the client connects (``INFO cluster`` says so) and opened as a
cluster client, so a managed Cluster is, as promised, a URL away. ``redis+cluster://`` and
``rediss+cluster://`` ask for a cluster client outright, without that first round trip.

Every key swarm uses shares one hash slot (see ``swarm.names``), so the scripts, transactions and
multi-stream reads the bus relies on run unchanged on a cluster.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from swarm.errors import ConfigurationError, RedisUnavailable
from swarm.settings import SSE_KEEPALIVE_MAX_S

log = logging.getLogger(__name__)

RedisClient: TypeAlias = Redis | RedisCluster
"""What every swarm process talks to Redis through."""

SOCKET_TIMEOUT_S = SSE_KEEPALIVE_MAX_S
"""How long one Redis call may go unanswered before it fails. It must stay above every blocking
read (a consumer's ``XREADGROUP`` blocks ``Consumer.block_ms``, the SSE stream's ``XREAD`` its
keepalive, 5 s by default), so only a server that stopped answering trips it: redis-py's own
default, 5 s, equals the SSE block and cut every quiet event stream."""
SOCKET_CONNECT_TIMEOUT_S = 5.0

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""URL schemes that ask for a cluster client, and the plain scheme redis-py is given."""


def text(reply: Any) -> str:
    """A Redis reply as ``str``: swarm's clients return bytes (``decode_responses=False``)."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


CALL_RETRIES = 4
"""Retries of one Redis command on a lost connection, a timeout or a Redis still loading: with
the backoff, about two seconds."""


def scheme_is_cluster(url: str) -> bool:
    """Whether ``url`` asks for a cluster client outright (``redis+cluster://``)."""
    scheme, sep, _rest = url.partition("://")
    return bool(sep) and scheme in CLUSTER_SCHEMES


def redis_client(url: str, *, max_connections: int | None = None, **options: Any) -> RedisClient:
    """A client as every swarm process uses it (bytes replies, bounded socket waits).

    A ``redis+cluster://`` URL gives a cluster client; any other URL a single-server client,
    without checking what the server is (``connect`` checks). ``max_connections`` bounds the
    pool (per node, for a cluster); a command finding it full waits for a connection, up to
    the socket timeout, instead of opening another.
    """
    settings: dict[str, Any] = {
        "decode_responses": False,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT_S,
        # Every call path rides out a blip (a restart, a failover, an AOF replay) in the client:
        # capped exponential backoff with jitter. A longer outage is the callers' loops' to wait
        # out (:class:`Outage`).
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), CALL_RETRIES),
        **options,
    }
    if not scheme_is_cluster(url):
        settings.setdefault(
            "retry_on_error", [BusyLoadingError, RedisConnectionError, RedisTimeoutError]
        )
    scheme, sep, rest = url.partition("://")
    if sep and scheme in CLUSTER_SCHEMES:
        if urlsplit(url).path.strip("/") not in ("", "0"):
            raise ConfigurationError(
                f"Redis Cluster has only database 0: drop the database number from {shown(url)}"
            )
        if max_connections is not None:
            settings["max_connections"] = max_connections
        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{rest}", **settings)
    if max_connections is None:
        return Redis.from_url(url, **settings)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=SOCKET_TIMEOUT_S, **settings
    )
    return Redis(connection_pool=pool, auto_close_connection_pool=True)


SECRET_QUERY_KEYS = frozenset(
    {"password", "pass", "passwd", "pwd", "token", "secret", "key", "api_key", "apikey",
     "access_token", "auth"}
)  # fmt: skip
"""Query parameters whose values are secrets ("redis://host?password=...")."""


def shown(url: str) -> str:
    """``url`` fit for a message or a log line: a password in it, or in a query parameter such
    as ``?password=``, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        parts = parts._replace(netloc=netloc)
    if parts.query:
        masked = [
            f"{name}=***" if name.lower() in SECRET_QUERY_KEYS and sep else f"{name}{sep}{value}"
            for name, sep, value in (pair.partition("=") for pair in parts.query.split("&"))
        ]
        parts = parts._replace(query="&".join(masked))
    return parts.geturl()


def cluster_url(url: str) -> str:
    """``url`` with the scheme that asks for a cluster client."""
    scheme, _, rest = url.partition("://")
    return url if scheme in CLUSTER_SCHEMES else f"{scheme}+cluster://{rest}"


async def is_cluster_node(client: Redis) -> bool:
    """Whether the server ``client`` talks to runs in cluster mode."""
    try:
        info = await client.info("cluster")
    except ResponseError:  # a proxy or a managed service that hides INFO: treat as one server
        return False
    return str(info.get("cluster_enabled", "0")) == "1"


async def connect(url: str, **options: Any) -> RedisClient:
    """Open a client for ``url`` and check that the server answers.

    A plain URL that turns out to point at a Cluster node is reopened as a cluster client.
    Raises ``RedisUnavailable`` with the reason if the server cannot be reached, and
    ``ConfigurationError`` for a URL a cluster cannot take.
    """
    client = redis_client(url, **options)
    try:
        await client.ping()
        if isinstance(client, Redis) and await is_cluster_node(client):
            await client.aclose()
            if url.partition("://")[0] not in ("redis", "rediss"):
                raise ConfigurationError(
                    f"{shown(url)} is a Redis Cluster node: reach it over TCP, as "
                    "redis://host:port or rediss://host:port"
                )
            log.info("Redis at %s is a cluster node; using a cluster client", shown(url))
            client = redis_client(cluster_url(url), **options)
            await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        if "SELECT is not allowed in cluster mode" in str(exc):
            raise ConfigurationError(
                f"{shown(url)} is a Redis Cluster node, and a cluster has only database 0: "
                "drop the database number from the URL"
            ) from exc
        raise RedisUnavailable(f"cannot reach Redis at {shown(url)}: {exc}") from exc
    return client


OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # refused, reset; BusyLoadingError while Redis replays its AOF
    RedisTimeoutError,
    BusyLoadingError,
    ClusterDownError,  # a cluster failing over
    TryAgainError,
    ReadOnlyError,  # a replica that has not been promoted yet
    OSError,
)
"""What Redis raises while it restarts, replays its log or fails over: worth waiting out. A
command Redis rejects (a wrong type, say) is no outage and is not retried."""


class Outage:
    """Rides out a Redis outage in a loop: capped exponential backoff with jitter, one log line
    when the outage starts and one when it ends, never one per failed call.

    ``await outage.wait(exc)`` after a failed pass, ``outage.over()`` after a good one.
    """

    def __init__(self, what: str, *, first_s: float = 0.1, most_s: float = 2.0) -> None:
        self.what = what
        self.first_s = first_s
        self.most_s = most_s
        self.failures = 0
        self.since: float | None = None

    async def wait(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("%s: Redis is unavailable (%s); retrying until it is back", self.what,
                        exc or type(exc).__name__)  # fmt: skip
        delay = min(self.most_s, self.first_s * 2**self.failures)
        self.failures += 1
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    def over(self) -> None:
        if self.since is not None:
            log.warning("%s: Redis is back after %.1f s", self.what, time.monotonic() - self.since)
        self.since = None
        self.failures = 0


async def connect_when_up(url: str, what: str, **options: Any) -> RedisClient:
    """:func:`connect`, waiting out an outage: a role started while Redis restarts or fails
    over (a supervisor restarting it, say) waits for it instead of exiting. A URL that cannot
    work still fails at once (``ConfigurationError``)."""
    outage = Outage(what)
    while True:
        try:
            client = await connect(url, **options)
        except RedisUnavailable as exc:
            await outage.wait(exc)
            continue
        outage.over()
        return client
