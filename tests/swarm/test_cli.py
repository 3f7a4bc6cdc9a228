"""The console script as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import TEST_HOME

SWARM = Path(sys.executable).with_name("swarm")


def swarm(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SWARM), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_lists_one_command_per_role() -> None:
    result = swarm("--help")
    assert result.returncode == 0
    for command in (
        "doctor",
        "model",
        "serve-model",
        "registry",
        "api",
        "orchestrator",
        "worker",
        "submit",
        "up",
        "version",
    ):
        assert command in result.stdout


def test_model_prepare_is_idempotent_and_shows_progress(default_model_dir: Path) -> None:
    result = swarm("model", "prepare", SWARM_HOME=str(TEST_HOME))
    assert result.returncode == 0, result.stderr
    assert f"already prepared: {default_model_dir}" in result.stdout
    assert f"base model ready: {default_model_dir}" in result.stdout


def test_serve_model_reports_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    result = swarm("serve-model", SWARM_VLLM_DEVICE="tpu", SWARM_HOME=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: invalid settings: SWARM_VLLM_DEVICE='tpu'")
