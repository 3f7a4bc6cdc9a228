"""compose.yaml and the Dockerfile, checked without a Docker engine.

Every service's command must be a real ``swarm`` subcommand, every ``SWARM_*`` variable a real
setting, and ports, healthchecks, volumes and dependencies must line up. Each check is run on a
broken copy too, so none of them can pass by accident.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarm.settings import Settings

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES = {"redis", "vllm", "vllm-cpu", "model-prepare", "api", "orchestrator", "worker",
            "registry"}  # fmt: skip


def swarm_commands() -> set[tuple[str, ...]]:
    """Every command path of the ``swarm`` CLI, plugin commands included."""
    from swarm import cli

    cli._plugin_commands()
    paths: set[tuple[str, ...]] = set()
    for command in cli.app.registered_commands:
        paths.add((command.name or command.callback.__name__.replace("_", "-"),))
    for group in cli.app.registered_groups:
        assert group.typer_instance is not None and group.name is not None
        for command in group.typer_instance.registered_commands:
            paths.add((group.name, command.name or command.callback.__name__))
    return paths


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def port_of(url: str) -> int:
    match = re.search(r":(\d+)", url.split("//", 1)[-1])
    assert match, url
    return int(match.group(1))


def problems(compose: dict[str, Any]) -> list[str]:
    found: list[str] = []
    services: dict[str, Any] = compose["services"]
    commands = swarm_commands()
    settings = {name.upper() for name in Settings.model_fields}
    declared = set(compose.get("volumes") or {})
    if set(services) != SERVICES:
        found.append(f"services {sorted(services)} are not {sorted(SERVICES)}")
    for name, service in services.items():
        command = service.get("command")
        if service.get("image", "").startswith("swarm") or "build" in service:
            if not (isinstance(command, list) and command[:1] == ["swarm"]):
                found.append(f"{name}: command {command!r} is not a swarm command")
            elif tuple(command[1:3]) not in commands and tuple(command[1:2]) not in commands:
                found.append(f"{name}: `{' '.join(command)}` is not a swarm subcommand")
        for key in environment(service):
            if key.startswith("SWARM_") and key.removeprefix("SWARM_") not in settings:
                found.append(f"{name}: {key} is not a setting")
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/")) and source not in declared:
                found.append(f"{name}: volume {source} is not declared")
        for target in service.get("depends_on") or {}:
            if target not in services:
                found.append(f"{name}: depends on unknown service {target}")
    for name in ("redis", "vllm", "vllm-cpu", "api"):
        if "healthcheck" not in services.get(name, {}):
            found.append(f"{name}: no healthcheck")
    api = services.get("api", {})
    api_port = int(environment(api).get("SWARM_API_PORT", Settings().api_port))
    if f"{api_port}:{api_port}" not in api.get("ports", []):
        found.append(f"api: port {api_port} is not published")
    if f"localhost:{api_port}/healthz" not in " ".join(api.get("healthcheck", {}).get("test", [])):
        found.append("api: healthcheck does not probe /healthz on the API port")
    cpu = services.get("vllm-cpu", {})
    vllm_port = int(environment(cpu).get("SWARM_VLLM_PORT", Settings().vllm_port))
    for name in ("api", "worker", "registry"):
        urls = environment(services.get(name, {})).get("SWARM_VLLM_URLS", "")
        if not urls or port_of(urls) != vllm_port:
            found.append(f"{name}: SWARM_VLLM_URLS {urls!r} misses vLLM's port {vllm_port}")
    gpu = services.get("vllm", {})
    if f"--port={vllm_port}" not in gpu.get("command", []):
        found.append(f"vllm: does not listen on {vllm_port}")
    for name, service in (("vllm", gpu), ("vllm-cpu", cpu)):
        probe = " ".join(service.get("healthcheck", {}).get("test", []))
        if f"localhost:{vllm_port}/health" not in probe:
            found.append(f"{name}: healthcheck does not probe vLLM's port")
        if environment(service).get("VLLM_ALLOW_RUNTIME_LORA_UPDATING") != "True":
            found.append(f"{name}: runtime LoRA updates are off")
        if not any(str(v).endswith(":/adapters") or ":/adapters:" in str(v)
                   for v in service.get("volumes", [])):  # fmt: skip
            found.append(f"{name}: the adapters folder is not mounted")
    redis = services.get("redis", {})
    if "--appendonly" not in redis.get("command", []) or not any(
        str(v).endswith(":/data") for v in redis.get("volumes", [])
    ):
        found.append("redis: no AOF persistence on a volume")
    prepare = services.get("model-prepare", {})
    for name in ("vllm", "vllm-cpu"):
        condition = services.get(name, {}).get("depends_on", {}).get("model-prepare", {})
        if condition.get("condition") != "service_completed_successfully" or not prepare:
            found.append(f"{name}: does not wait for model-prepare")
    return found


def test_compose_file_lines_up() -> None:
    assert problems(COMPOSE) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("services", "worker", "command"), ["swarm", "wrker"], "not a swarm subcommand"),
        (("services", "api", "environment", "SWARM_API_PORTT"), "1", "is not a setting"),
        (("services", "api", "ports"), ["9999:9999"], "port 8080 is not published"),
        (("services", "worker", "depends_on", "ghost"), {}, "unknown service ghost"),
        (("services", "worker", "volumes"), ["nowhere:/x"], "volume nowhere is not declared"),
        (("services", "redis", "command"), ["redis-server"], "no AOF persistence"),
    ],
)
def test_each_check_catches_its_mistake(path: tuple[str, ...], value: Any, expected: str) -> None:
    broken = copy.deepcopy(COMPOSE)
    target = broken
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    assert any(expected in p for p in problems(broken)), problems(broken)


def test_dockerfile_is_multi_stage_non_root_with_cpu_and_gpu_variants() -> None:
    assert len(re.findall(r"^FROM ", DOCKERFILE, re.MULTILINE)) >= 2
    assert re.search(r"^ARG DEVICE=cpu$", DOCKERFILE, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "'.[cpu]'" in DOCKERFILE and "'.[gpu]'" in DOCKERFILE
    assert "pip uninstall -y torchvision torchaudio torchcodec" in DOCKERFILE
    # The compose file builds the image it names, with a device the Dockerfile knows.
    build = COMPOSE["services"]["api"]["build"]
    assert build["args"]["DEVICE"] in ("cpu", "gpu")


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_accepts_it_when_the_plugin_is_there() -> None:
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if version.returncode != 0:
        pytest.skip("the docker client has no compose plugin")
    for profile in ("gpu", "cpu"):
        result = subprocess.run(
            ["docker", "compose", "--profile", profile, "config", "-q"],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
