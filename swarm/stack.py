"""``swarm up``: the whole local stack in one command.

Redis (reused if reachable, else a child ``redis-server`` when the URL points at this machine),
vLLM with the default model (prepared if needed), the registry, the API, an orchestrator and a
worker, each a child process running its own ``swarm`` command. Ports are checked before
anything starts, so a port in use is reported at once. Ctrl-C, at any moment (also while vLLM
is still starting), stops the swarm processes first, then vLLM, then a Redis it started.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

import httpx
import redis

from swarm.connections import CLUSTER_SCHEMES, shown
from swarm.errors import ConfigurationError, RedisUnavailable, SwarmError
from swarm.serving.modelserver import ModelServer
from swarm.settings import Settings

ROLES = ("registry", "orchestrator", "worker", "api")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts for which ``swarm up`` may start a Redis of its own."""
DEFAULT_API = "http://127.0.0.1:8080"
"""What ``swarm submit`` talks to when neither --url nor SWARM_API_* say otherwise."""
API_START_TIMEOUT_S = 60.0
STOP_GRACE_S = 30.0


def redis_problem(url: str) -> str | None:
    """None if the Redis at ``url`` answers PING, else why not (one line)."""
    scheme, _, _ = url.partition("://")
    if scheme in CLUSTER_SCHEMES:  # any node answers for the cluster
        url = f"{CLUSTER_SCHEMES[scheme]}://{urlparse(url).netloc}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    except ValueError as exc:
        raise ConfigurationError(
            f"SWARM_REDIS_URL={shown(url)!r} is not a Redis URL: {exc}"
        ) from exc
    try:
        client.ping()
        return None
    except (redis.RedisError, OSError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()


def redis_reachable(url: str) -> bool:
    return redis_problem(url) is None


def _listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def check_port_free(host: str, port: int, setting: str) -> None:
    """Raise ConfigurationError in one line if nothing new can listen on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As uvicorn and vLLM do: a port left in TIME_WAIT by a stopped server is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"port {port} is already in use on {host}; stop what listens there "
                    f"(ss -ltnp 'sport = :{port}') or set {setting} to a free port"
                ) from exc
            raise ConfigurationError(f"cannot listen on {host}:{port} ({setting}): {exc}") from exc


def check_ports(settings: Settings) -> None:
    """The ports vLLM and the API will listen on must be distinct and free."""
    if settings.vllm_port == settings.api_port:
        raise ConfigurationError(
            f"SWARM_VLLM_PORT and SWARM_API_PORT are both {settings.api_port}; give them "
            "different ports"
        )
    from swarm.http.app import anonymous_problem

    problem = anonymous_problem(settings)
    if problem is not None:
        raise ConfigurationError(problem)
    check_port_free(settings.vllm_host, settings.vllm_port, "SWARM_VLLM_PORT")
    check_port_free(settings.api_host, settings.api_port, "SWARM_API_PORT")


def start_redis(settings: Settings, echo: Callable[[str], None]) -> subprocess.Popen[bytes] | None:
    """Reuse a reachable Redis, or start ``redis-server`` as a child; None when reused.

    A Redis of its own is started only where that can help: the URL is ``redis://`` on this
    machine and nothing listens on its port yet. Every other failure is one line saying what
    to fix.
    """
    url = settings.redis_url
    problem = redis_problem(url)
    if problem is None:
        echo(f"redis: reusing {shown(url)}")
        return None
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or 6379
    if parsed.scheme != "redis" or host not in LOCAL_HOSTS:
        raise RedisUnavailable(
            f"cannot reach Redis at {shown(url)} ({problem}); start it, or set SWARM_REDIS_URL to "
            "a Redis that runs"
        )
    if _listening(host, port):
        raise RedisUnavailable(
            f"something listens on {host}:{port} but does not answer as the Redis at {shown(url)} "
            f"({problem}); fix SWARM_REDIS_URL (password? database?) or free the port"
        )
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigurationError(
            f"no Redis at {shown(url)} and no redis-server binary; install one "
            "(apt-get install redis-server, brew install redis) or set SWARM_REDIS_URL"
        )
    bind = "::1" if host == "::1" else "127.0.0.1"
    log_path = settings.home / "logs" / f"redis-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", bind, "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if redis_reachable(url):
            echo(f"redis: started redis-server on port {port} (log: {log_path})")
            return process
        time.sleep(0.1)
    _end(process)
    raise RedisUnavailable(
        f"redis-server did not start on port {port}: {_last_line(log_path) or 'no output'} "
        f"(log: {log_path})"
    )


def api_url(settings: Settings) -> str:
    """The API's base URL as a client on this machine reaches it."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        settings.api_host, settings.api_host
    )
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.api_port}"


def banner(settings: Settings) -> list[str]:
    """What ``swarm up`` prints once everything answers: the URL and examples that work."""
    api = api_url(settings)
    text = "Maria Lopez (maria@example.com) met Acme Corp in Berlin."
    auth = ' -H "authorization: Bearer $SWARM_API_KEY"' if settings.api_keys else ""
    url_option = f" --url {api}" if api != DEFAULT_API else ""
    lines = [
        "",
        f"swarm is up: {api}  (docs: {api}/docs)",
        "",
        f"curl -s {api}/v1/tasks -H 'content-type: application/json'{auth} "
        f"""-d '{{"input": "{text}", "plan": ["pii", "entities"]}}'""",
        f'swarm submit{url_option} --plan pii,entities "{text}"',
    ]
    if settings.api_keys:
        lines.append("(SWARM_API_KEYS is set: export SWARM_API_KEY=<one of its keys> first)")
    lines.append("Ctrl-C stops everything.")
    return lines


class _Stopper:
    """SIGINT/SIGTERM handler: while starting, it interrupts at once (KeyboardInterrupt);
    afterwards, and while a child is being spawned, it only records the request."""

    def __init__(self) -> None:
        self.requested = False
        self.interrupting = True

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if self.interrupting:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """No interruption inside (a child half spawned would be lost); checked after."""
        self.interrupting = False
        try:
            yield
        finally:
            self.interrupting = True
        if self.requested:
            raise KeyboardInterrupt


def run_stack(settings: Settings, *, echo: Callable[[str], None] = print) -> None:
    """Run everything until Ctrl-C, SIGTERM or SIGHUP (a clean stop) or until a component dies
    (a :class:`SwarmError` naming it and its log)."""
    stopper = _Stopper()
    # SIGHUP too: the children run in sessions of their own, so a closed terminal signals only
    # this process, and without a handler it would die leaving all of them running.
    stopped_by = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, stopper) for s in stopped_by}
    # A print that fails (stdout piped into a `tee` that Ctrl-C killed too) must never cut the
    # start or the cleanup short: that would leave the children running.
    echo = _tolerant(echo)
    redis_process: subprocess.Popen[bytes] | None = None
    server: ModelServer | None = None
    children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    serving = False
    try:
        check_ports(settings)
        with stopper.deferred():
            redis_process = start_redis(settings, echo)
        model = _base_model(settings, echo)
        server = ModelServer(settings, model=model)
        echo(f"vllm: starting (log: {server.log_path}); this takes 30-100 s on CPU")
        with stopper.deferred():
            server.start()
        server.wait_healthy()
        serving = True
        echo(f"vllm: serving at {server.url}")
        env = {**os.environ, "SWARM_VLLM_URLS": server.url}
        log_dir = settings.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for role in ROLES:
            log_path = log_dir / f"{role}.log"
            with stopper.deferred():
                children.append((role, spawn_role(role, env, log_path), log_path))
            echo(f"{role}: started (log: {log_path})")

        def check() -> None:
            for role, child, log_path in children:
                if child.poll() is not None:
                    raise SwarmError(_exited(role, child.returncode, log_path))
            process = server.process if server is not None else None
            if server is not None and process is not None and process.poll() is not None:
                raise SwarmError(_exited("vLLM", process.returncode, server.log_path))

        _wait_for(f"{api_url(settings)}/healthz", API_START_TIMEOUT_S, check)
        stopper.interrupting = False
        if stopper.requested:
            return
        for line in banner(settings):
            echo(line)
        restarts = Restarts()
        while not stopper.requested:
            # Up and serving: a role that dies is started again, with backoff, and said so.
            for index, (role, child, log_path) in enumerate(children):
                if child.poll() is None:
                    restarts.alive(role)
                    continue
                if restarts.due(role, _exited(role, child.returncode, log_path), echo):
                    with stopper.deferred():
                        children[index] = (role, spawn_role(role, env, log_path), log_path)
            process = server.process
            if process is not None and process.poll() is not None:
                raise SwarmError(_exited("vLLM", process.returncode, server.log_path))
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass  # Ctrl-C while starting: as clean a stop as one after
    finally:
        stopper.interrupting = False  # a second Ctrl-C must not cut the cleanup short
        started = bool(children) or server is not None or redis_process is not None
        if started:
            echo("stopping...")
        for _role, child, _log in children:
            _signal(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S  # shared: they were all told at once
        for _role, child, _log in children:
            _end(child, grace_s=max(0.0, deadline - time.monotonic()), signalled=True)
        if server is not None and server.process is not None:
            # A vLLM still starting has nothing to finish: it need not be given long.
            server.stop(grace_s=15.0 if serving else 5.0)
            # Whatever outlived vLLM's API server in its process group (its engine) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.process.pid, signal.SIGKILL)
        if redis_process is not None:
            _end(redis_process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if started:
            echo("stopped")


def spawn_role(role: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``swarm <role>`` as a child in a session of its own, its output appended to its log."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "swarm.cli", role],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class Restarts:
    """When each dead role may start again: after 1, 2, 4... up to 30 s, the wait growing while
    it keeps dying and starting afresh once it has run for a minute."""

    FIRST_S = 1.0
    MOST_S = 30.0
    STEADY_S = 60.0

    def __init__(self) -> None:
        self.failures: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.waiting: dict[str, float] = {}

    def alive(self, role: str) -> None:
        started = self.started.get(role)
        if started is not None and time.monotonic() - started > self.STEADY_S:
            self.failures.pop(role, None)

    def due(self, role: str, why: str, echo: Callable[[str], None]) -> bool:
        """Whether to start the dead ``role`` now; says once per death when it will."""
        now = time.monotonic()
        if role not in self.waiting:
            failures = self.failures.get(role, 0)
            delay = min(self.MOST_S, self.FIRST_S * 2**failures)
            self.failures[role] = failures + 1
            self.waiting[role] = now + delay
            echo(f"{why}; restarting it in {delay:.0f} s")
        if now < self.waiting[role]:
            return False
        del self.waiting[role]
        self.started[role] = now
        echo(f"{role}: restarted")
        return True


def _tolerant(echo: Callable[[str], None]) -> Callable[[str], None]:
    def say(line: str) -> None:
        with contextlib.suppress(OSError):
            echo(line)

    return say


def _base_model(settings: Settings, echo: Callable[[str], None]) -> str:
    """The model vLLM loads, preparing a packaged base first (with progress) if needed."""
    from swarm.serving.basemodel import (
        base_dir,
        is_prepared,
        packaged,
        prepare_base,
        resolve_base_model,
    )

    base = packaged(settings)
    if base is not None and not is_prepared(base_dir(settings, base)):
        echo(f"model: preparing {base.name} once (about 1 minute)")
        prepare_base(settings, base, progress=lambda message: echo(f"model: {message}"))
    return resolve_base_model(settings, prepare=True)


def _signal(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)


def _end(child: subprocess.Popen[bytes], *, grace_s: float = 10.0, signalled: bool = False) -> None:
    """SIGTERM a child's process group (unless done already), SIGKILL it after ``grace_s``."""
    if not signalled:
        _signal(child, signal.SIGTERM)
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal(child, signal.SIGKILL)
        child.wait()


def _last_line(path: Path) -> str:
    """The last non-blank line of a log ("" if none)."""
    with contextlib.suppress(OSError):
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 4096))
            lines = [line.strip() for line in log.read().decode(errors="replace").splitlines()]
        return next((line for line in reversed(lines) if line), "")
    return ""


def _exited(what: str, code: int | None, log_path: Path) -> str:
    """Why a child is gone: its signal, or its status and the last line it logged."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"{what} was killed by {signal.Signals(-code).name} (log: {log_path})"
    last = _last_line(log_path)
    because = f": {last}" if last else ""
    return f"{what} exited with status {code}{because} (log: {log_path})"


def _wait_for(url: str, timeout_s: float, check: Callable[[], None] = lambda: None) -> None:
    """Until ``url`` answers 200; ``check`` raises if what should answer has died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise SwarmError(f"{url} did not answer within {timeout_s:g}s")
