"""``swarm up`` as a user meets it before vLLM answers: busy ports, a Redis that is not there,
Ctrl-C while starting, and the banner it prints once up."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarm.errors import ConfigurationError, RedisUnavailable
from swarm.settings import Settings
from swarm.stack import _exited, banner, check_ports, start_redis

from conftest import free_port
from redisfixture import TEST_REDIS_URL

SWARM = Path(sys.executable).with_name("swarm")


def swarm_up(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SWARM), "up"],
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "SWARM_HOME": str(tmp_path / "home"),
            "SWARM_ADAPTERS_DIR": str(tmp_path / "adapters"),
            "SWARM_REDIS_URL": TEST_REDIS_URL,
            "SWARM_VLLM_PORT": str(free_port()),
            "SWARM_API_PORT": str(free_port()),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(up: subprocess.Popen[str], timeout_s: float = 60) -> tuple[str, str]:
    """Its output once it exits; if it does not in time, stop it as Ctrl-C does (so that
    no vLLM it started is left behind) and fail."""
    try:
        return up.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=60)
        raise AssertionError(f"swarm up did not exit within {timeout_s:g}s:\n{out}{err}") from None


def listener() -> socket.socket:
    sock = socket.create_server(("127.0.0.1", 0))
    return sock


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with listener() as busy:
        port = busy.getsockname()[1]
        up = swarm_up(tmp_path, SWARM_API_PORT=str(port))
        out, err = finish(up, 30)
    assert up.returncode == 1, out + err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: port {port} is already in use on 127.0.0.1")
    assert "set SWARM_API_PORT to a free port" in err
    assert out == ""  # nothing started, nothing to stop


def test_busy_or_equal_ports_name_the_setting() -> None:
    with listener() as busy:
        port = busy.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"port {port} .* set SWARM_VLLM_PORT"):
            check_ports(Settings(vllm_port=port, api_port=free_port()))
    with pytest.raises(ConfigurationError, match="SWARM_VLLM_PORT and SWARM_API_PORT are both"):
        check_ports(Settings(vllm_port=8123, api_port=8123))


def test_an_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    url = f"redis://127.0.0.2:{free_port()}/0"  # not this machine's name: nothing to start
    up = swarm_up(tmp_path, SWARM_REDIS_URL=url)
    out, err = finish(up, 30)
    assert up.returncode == 1, out + err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: cannot reach Redis at {url} (")
    assert "set SWARM_REDIS_URL" in err
    assert out == ""


def test_redis_is_reused_started_or_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    settings = Settings(redis_url=TEST_REDIS_URL, home=tmp_path)
    assert start_redis(settings, said.append) is None
    assert said == [f"redis: reusing {TEST_REDIS_URL}"]

    with listener() as not_redis:  # accepts connections, never answers
        url = f"redis://127.0.0.1:{not_redis.getsockname()[1]}/0"
        with pytest.raises(RedisUnavailable, match="does not answer as the Redis"):
            start_redis(Settings(redis_url=url, home=tmp_path), said.append)

    closed = f"redis://127.0.0.1:{free_port()}/3"
    if shutil.which("redis-server"):
        process = start_redis(Settings(redis_url=closed, home=tmp_path), said.append)
        assert process is not None
        try:
            assert said[-1].startswith("redis: started redis-server on port")
        finally:
            process.terminate()
            process.wait(timeout=10)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="no redis-server binary"):
        start_redis(Settings(redis_url=closed, home=tmp_path), said.append)


def _processes_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM installed")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "hangup"])
def test_ctrl_c_while_vllm_starts_stops_at_once_and_leaves_nothing(
    tmp_path: Path, stop: signal.Signals
) -> None:
    model = str(tmp_path / "no-such-model")  # vLLM is interrupted long before it looks
    up = swarm_up(tmp_path, SWARM_BASE_MODEL=model, SWARM_VLLM_DEVICE="cpu")
    assert up.stdout is not None
    lines = []
    for line in up.stdout:
        lines.append(line)
        if line.startswith("vllm: starting"):
            break
    time.sleep(1)
    assert _processes_with(model), "vLLM was not started"
    up.send_signal(stop)  # Ctrl-C, or the terminal closing (only this process hears it)
    out, err = finish(up, 25)  # at once, not after vLLM has started
    assert up.returncode == 0, "".join(lines) + out + err
    assert out.rstrip().endswith("stopping...\nstopped"), out
    assert "Traceback" not in err, err
    assert "swarm is up" not in out
    assert not _processes_with(model)


def test_the_banner_prints_commands_that_work_as_printed() -> None:
    assert banner(Settings()) == [
        "",
        "swarm is up: http://127.0.0.1:8080  (docs: http://127.0.0.1:8080/docs)",
        "",
        "curl -s http://127.0.0.1:8080/v1/tasks -H 'content-type: application/json' -d "
        """'{"input": "Maria Lopez (maria@example.com) met Acme Corp in Berlin.", """
        """"plan": ["pii", "entities"]}'""",
        'swarm submit --plan pii,entities "Maria Lopez (maria@example.com) met Acme Corp in '
        'Berlin."',
        "Ctrl-C stops everything.",
    ]
    # Another shell has not got this one's SWARM_API_* settings: the commands say where to go.
    moved = banner(Settings(api_host="0.0.0.0", api_port=8180, api_keys="k"))  # type: ignore[arg-type]
    assert moved[1].startswith("swarm is up: http://127.0.0.1:8180 ")
    assert moved[3].startswith(
        "curl -s http://127.0.0.1:8180/v1/tasks -H 'content-type: application/json' "
        '-H "authorization: Bearer $SWARM_API_KEY" -d '
    )
    assert moved[4].startswith("swarm submit --url http://127.0.0.1:8180 --plan pii,entities")
    assert "export SWARM_API_KEY" in moved[5]


def test_a_component_that_died_is_named_with_why(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.write_text("INFO: starting\nOSError: [Errno 98] address already in use\n\n")
    assert _exited("api", 1, log) == (
        f"api exited with status 1: OSError: [Errno 98] address already in use (log: {log})"
    )
    assert _exited("worker", -9, log) == f"worker was killed by SIGKILL (log: {log})"


def test_a_dead_role_is_restarted_with_growing_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm import stack

    now = [100.0]
    monkeypatch.setattr(stack.time, "monotonic", lambda: now[0])
    said: list[str] = []
    restarts = stack.Restarts()
    assert not restarts.due("worker", "worker exited with status 1", said.append)
    assert said == ["worker exited with status 1; restarting it in 1 s"]
    now[0] += 1.0
    assert restarts.due("worker", "worker exited with status 1", said.append)
    assert said[-1] == "worker: restarted"
    # It dies again at once: the wait doubles; after a steady minute it starts afresh.
    assert not restarts.due("worker", "worker exited with status 1", said.append)
    assert said[-1].endswith("restarting it in 2 s")
    now[0] += 2.0
    assert restarts.due("worker", "x", said.append)
    now[0] += 61.0
    restarts.alive("worker")
    assert not restarts.due("worker", "worker exited again", said.append)
    assert said[-1] == "worker exited again; restarting it in 1 s"
