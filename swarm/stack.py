"""``swarm up``: the whole local stack in one command.

Redis (reused if reachable, else a child ``redis-server``), vLLM with the default model
(prepared if needed), the registry, the API, an orchestrator and a worker, each a child process
running its own ``swarm`` command. Ctrl-C stops them in reverse order.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from urllib.parse import urlparse

import httpx
import redis

from swarm.errors import ConfigurationError, SwarmError
from swarm.modelserver import ModelServer
from swarm.settings import Settings

ROLES = ("registry", "orchestrator", "worker", "api")


def redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def start_redis(settings: Settings, echo: Callable[[str], None]) -> subprocess.Popen[bytes] | None:
    """Reuse a reachable Redis, or start ``redis-server`` as a child; None when reused."""
    if redis_reachable(settings.redis_url):
        echo(f"redis: reusing {settings.redis_url}")
        return None
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigurationError(
            f"no Redis at {settings.redis_url} and no redis-server binary; install one "
            "(apt-get install redis-server, brew install redis) or set SWARM_REDIS_URL"
        )
    port = urlparse(settings.redis_url).port or 6379
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(50):
        if redis_reachable(settings.redis_url):
            echo(f"redis: started redis-server on port {port}")
            return process
        time.sleep(0.1)
    process.terminate()
    raise ConfigurationError(f"redis-server did not start on port {port}")


def run_stack(settings: Settings, *, echo: Callable[[str], None] = print) -> None:
    """Run everything until Ctrl-C or until a component dies."""
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    redis_process = start_redis(settings, echo)
    if redis_process is not None:
        children.append(("redis", redis_process))
    server: ModelServer | None = None
    stop = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    env = {**os.environ, "SWARM_VLLM_URLS": f"http://127.0.0.1:{settings.vllm_port}"}
    try:
        from swarm.basemodel import resolve_base_model

        model = resolve_base_model(settings, prepare=True)
        server = ModelServer(settings, model=model)
        echo(f"vllm: starting (log: {server.log_path}); this takes 30-100 s on CPU")
        server.start()
        server.wait_healthy()
        echo(f"vllm: serving at {server.url}")
        log_dir = settings.home / "logs"
        for role in ROLES:
            log = open(log_dir / f"{role}.log", "ab")  # noqa: SIM115 - lives as long as the child
            children.append(
                (
                    role,
                    subprocess.Popen(
                        [sys.executable, "-m", "swarm.cli", role],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    ),
                )
            )
            echo(f"{role}: started (log: {log_dir / f'{role}.log'})")
        api = f"http://{settings.api_host}:{settings.api_port}"
        _wait_for(f"{api}/healthz", 30)
        echo(f"\nswarm is up: {api}  (docs: {api}/docs)\n")
        echo(
            f"curl -s {api}/v1/tasks -H 'content-type: application/json' -d "
            """'{"input": "Maria Lopez (maria@example.com) met Acme Corp in Berlin.", """
            """"plan": ["pii", "entities"]}'"""
        )
        echo(
            "swarm submit --plan pii,entities 'Maria Lopez (maria@example.com) met Acme in Berlin.'"
        )
        echo("Ctrl-C stops everything.")
        while not stop:
            for role, child in children:
                if child.poll() is not None:
                    raise SwarmError(f"{role} exited with status {child.returncode}; see its log")
            if server.process is not None and server.process.poll() is not None:
                raise SwarmError(f"vLLM exited; see {server.log_path}")
            time.sleep(0.5)
    finally:
        echo("stopping...")
        for _role, child in reversed(children):
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        for _role, child in reversed(children):
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        echo("stopped")


def _wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise SwarmError(f"{url} did not answer within {timeout_s:g}s")
