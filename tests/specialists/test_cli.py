"""``swarm distill`` and ``swarm eval`` as a user runs them: help, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from specialists.builtin.sql import data as sqldata
from swarm.distill.dataset import write_examples

from conftest import TEST_HOME, VllmServer

SWARM = Path(sys.executable).with_name("swarm")


def swarm(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SWARM), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=600
    )


def test_help_lists_distill_and_eval() -> None:
    result = swarm("--help")
    assert "distill" in result.stdout and "eval" in result.stdout
    assert "--teacher" in swarm("distill", "--help").stdout
    assert "--adapter" in swarm("eval", "--help").stdout


def test_unknown_specialist_is_one_line(tmp_path: Path) -> None:
    result = swarm("distill", "nope", SWARM_HOME=str(tmp_path), SWARM_ADAPTERS_DIR=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no specialist 'nope': not built in (entities, pii, sql) and no "
        f"{tmp_path}/nope/specialist.yaml"
    ]


def test_eval_needs_exactly_one_target_and_labelled_data(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"input": {"text": "a"}}\n')
    both = swarm("eval", "pii", "--data", str(data), "--base", "--adapter", str(tmp_path))
    assert both.returncode == 1
    assert both.stderr == "error: give exactly one of --adapter PATH or --base\n"
    unlabelled = swarm("eval", "pii", "--data", str(data), "--base")
    assert unlabelled.returncode == 1
    assert unlabelled.stderr == f"error: 1 examples in {data} have no 'output' to score\n"
    missing = swarm("eval", "pii", "--data", str(tmp_path / "none.jsonl"), "--base")
    assert missing.returncode == 1 and "error: cannot read" in missing.stderr
    report = swarm("eval", "pii", "--data", str(data), "--base", "--report", str(tmp_path))
    assert report.returncode == 1
    assert report.stderr == "error: --report compares an adapter with the base: give --adapter\n"


@pytest.mark.slow
def test_calibrate_on_a_labelled_file(vllm_server: VllmServer, tmp_path: Path) -> None:
    data = tmp_path / "sql.jsonl"
    write_examples(data, sqldata.generate(6, seed=9))
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    env = {
        "SWARM_HOME": str(TEST_HOME),
        "SWARM_ADAPTERS_DIR": str(adapters),
        "SWARM_VLLM_URLS": vllm_server.url,
    }
    out = tmp_path / "calibration"
    result = swarm("calibrate", "sql", "--data", str(data), "-q", "0.9", "--out", str(out), **env)
    assert result.returncode == 0, result.stderr
    assert "| threshold | escalation rate | quality |" in result.stdout
    chosen = json.loads(result.stdout.strip().splitlines()[-1])
    assert chosen["quality"] >= 0.9 and 0.0 <= chosen["escalation_rate"] <= 1.0
    assert (out / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    curve = json.loads((out / "calibration.json").read_text())["curve"]
    assert curve[-1]["escalation_rate"] == 1.0 and curve[-1]["quality"] == 1.0
