"""``swarm doctor`` run as a user runs it: the installed console script, real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from redisfixture import TEST_REDIS_URL

SWARM = Path(sys.executable).with_name("swarm")


def run_doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    assert SWARM.exists(), "the swarm console script is not installed beside this Python"
    full_env = {
        **os.environ,
        "SWARM_REDIS_URL": TEST_REDIS_URL,
        "SWARM_VLLM_URLS": "",
        "SWARM_ADAPTERS_DIR": str(tmp_path),
        "SWARM_TEACHER_API_KEY": "sk-secret",
        **env,
    }
    return subprocess.run(
        [SWARM, "doctor"], env=full_env, capture_output=True, text=True, timeout=60
    )


def test_doctor_passes_and_prints_settings_with_secrets_masked(tmp_path: Path) -> None:
    (tmp_path / "sql").mkdir()
    result = run_doctor(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SWARM_REDIS_URL={TEST_REDIS_URL}" in result.stdout
    assert "SWARM_TEACHER_API_KEY=****" in result.stdout
    assert "sk-secret" not in result.stdout
    assert "ok   redis: Redis " in result.stdout
    assert "1 folder(s) sql" in result.stdout


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"SWARM_REDIS_URL": "redis://127.0.0.1:1/0"},
            "FAIL redis: cannot reach Redis at redis://127.0.0.1:1/0",
        ),
        (
            {"SWARM_VLLM_URLS": "http://127.0.0.1:1"},
            "FAIL vllm: vLLM at http://127.0.0.1:1 is not answering",
        ),
        ({"SWARM_ADAPTERS_DIR": "/nonexistent/adapters"}, "FAIL adapters: adapters dir"),
    ],
)
def test_each_problem_gets_one_clear_line(tmp_path: Path, env: dict[str, str], line: str) -> None:
    result = run_doctor(tmp_path, **env)
    assert result.returncode == 1
    [failure] = [row for row in result.stdout.splitlines() if "FAIL" in row]
    assert failure.strip().startswith(line), failure
    assert "1 problem(s) found." in result.stderr


def test_invalid_settings_are_one_line_errors(tmp_path: Path) -> None:
    result = run_doctor(tmp_path, SWARM_HEARTBEAT_TIMEOUT_S="soon")
    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid settings:")


def test_a_password_in_the_redis_url_is_never_printed(tmp_path: Path) -> None:
    result = run_doctor(tmp_path, SWARM_REDIS_URL="redis://default:hunter2@127.0.0.1:1/0")
    assert result.returncode == 1
    assert "hunter2" not in result.stdout + result.stderr
    assert "SWARM_REDIS_URL=redis://default:***@127.0.0.1:1/0" in result.stdout
    assert "cannot reach Redis at redis://default:***@127.0.0.1:1/0" in result.stdout
