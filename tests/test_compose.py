"""compose.yaml and the Dockerfile, checked without a Docker engine.

Every service's command must be a real ``swarm`` subcommand, every ``SWARM_*`` variable a real
setting, the GPU vLLM service must run what ``swarm serve-model`` runs, and ports, healthchecks,
volumes and dependencies must line up. Each check is also run on a broken copy, so that none of
them passes by accident. ``docker compose config`` itself runs where a Compose v2 binary exists.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from swarm.serving.basemodel import default_model_dir
from swarm.serving.modelserver import server_command, server_environment
from swarm.settings import Settings

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES = {"redis", "vllm", "vllm-cpu", "model-prepare", "api", "orchestrator", "worker",
            "registry"}  # fmt: skip
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DELETE = object()
"""In a mutation: remove the key instead of setting it."""


@functools.cache
def swarm_commands() -> frozenset[tuple[str, ...]]:
    """Every command path of the ``swarm`` CLI, as click sees it, plus the plugin commands."""
    from swarm import cli

    paths: set[tuple[str, ...]] = set()

    def walk(command: Any, prefix: tuple[str, ...]) -> None:
        subcommands = getattr(command, "commands", None)  # a group (typer vendors click)
        if isinstance(subcommands, dict):
            for name, sub in subcommands.items():
                walk(sub, (*prefix, name))
        else:
            paths.add(prefix)

    walk(typer.main.get_command(cli.app), ())
    # Plugin commands come from the swarm.commands entry points (see cli._plugin_commands).
    for entry in entry_points(group="swarm.commands"):
        assert callable(entry.load()), entry
        paths.add((entry.name,))
    return frozenset(paths)


def is_swarm_command(command: Any) -> bool:
    if not (isinstance(command, list) and command[:1] == ["swarm"]):
        return False
    words: list[str] = []
    for arg in command[1:]:
        if str(arg).startswith("-"):
            break
        words.append(str(arg))
    commands = swarm_commands()
    return any(tuple(words[:k]) in commands for k in range(1, len(words) + 1))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def port_of(url: str) -> int:
    match = re.search(r":(\d+)", url.split("//", 1)[-1])
    assert match, url
    return int(match.group(1))


def flags(argv: list[str]) -> dict[str, str | None]:
    """``--name value`` and ``--name=value`` alike, as {name: value}; a bare switch is None."""
    parsed: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        arg = str(argv[i])
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            parsed[name] = value
        elif arg.startswith("--"):
            nxt = str(argv[i + 1]) if i + 1 < len(argv) else "--"
            parsed[arg] = None if nxt.startswith("--") else nxt
            i += 0 if nxt.startswith("--") else 1
        i += 1
    return parsed


def problems(compose: dict[str, Any]) -> list[str]:
    found: list[str] = []
    services: dict[str, Any] = compose["services"]
    settings = {name.upper() for name in Settings.model_fields}
    declared = set(compose.get("volumes") or {})
    if set(services) != SERVICES:
        found.append(f"services {sorted(services)} are not {sorted(SERVICES)}")
    for name, service in services.items():
        command = service.get("command")
        ours = str(service.get("image", "")).startswith("swarm") or "build" in service
        if ours and not is_swarm_command(command):
            found.append(f"{name}: `{command}` is not a swarm subcommand")
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
    published = [str(p) for p in api.get("ports", [])]
    if f"127.0.0.1:{api_port}:{api_port}" not in published:
        found.append(f"api: port {api_port} is not published on 127.0.0.1")
    if any(p.count(":") < 2 or p.startswith("0.0.0.0") for p in published):
        found.append("api: published on every interface, not on 127.0.0.1")
    if f"localhost:{api_port}/healthz" not in " ".join(api.get("healthcheck", {}).get("test", [])):
        found.append("api: healthcheck does not probe /healthz on the API port")
    cpu = services.get("vllm-cpu", {})
    vllm_port = int(environment(cpu).get("SWARM_VLLM_PORT", Settings().vllm_port))
    for name in ("api", "worker", "registry", "orchestrator"):
        urls = environment(services.get(name, {})).get("SWARM_VLLM_URLS", "")
        if not urls or port_of(urls) != vllm_port:
            found.append(f"{name}: SWARM_VLLM_URLS {urls!r} misses vLLM's port {vllm_port}")
    gpu = services.get("vllm", {})
    if flags(gpu.get("command", [])).get("--port") != str(vllm_port):
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
    if prepare.get("command") != ["swarm", "model", "prepare"]:
        found.append("model-prepare: does not run `swarm model prepare`")
    for name in ("vllm", "vllm-cpu"):
        condition = services.get(name, {}).get("depends_on", {}).get("model-prepare", {})
        if condition.get("condition") != "service_completed_successfully" or not prepare:
            found.append(f"{name}: does not wait for model-prepare")
    for name in ("registry", "api", "orchestrator", "worker"):
        redis_dep = services.get(name, {}).get("depends_on", {}).get("redis", {})
        if redis_dep.get("condition") != "service_healthy":
            found.append(f"{name}: does not wait for a healthy redis")
    for name in ("vllm", "vllm-cpu"):
        condition = services.get("registry", {}).get("depends_on", {}).get(name, {})
        if condition.get("condition") != "service_healthy":
            found.append(f"registry: does not wait for a healthy {name}")
    return found


def expected_vllm(home: str, adapters: str) -> tuple[dict[str, str | None], dict[str, str]]:
    """The flags and vLLM environment ``swarm serve-model`` would use on a GPU in the stack."""
    settings = Settings(
        vllm_host="0.0.0.0",
        vllm_port=8000,
        vllm_device="gpu",
        vllm_extra_args="",
        home=Path(home),
        adapters_dir=Path(adapters),
    )
    argv = server_command(settings, str(default_model_dir(settings)))
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("VLLM_", "HF_"))}
    try:
        env = server_environment(settings)
    finally:
        os.environ.update(saved)
    wanted = {k: v for k, v in env.items() if k.startswith(("VLLM_", "HF_"))}
    return flags(argv[3:]), wanted  # after `python -m vllm.entrypoints.openai.api_server`


def vllm_mirror_problems(compose: dict[str, Any]) -> list[str]:
    """Where the GPU vLLM service departs from what ``swarm serve-model`` runs."""
    found: list[str] = []
    services = compose["services"]
    gpu = services["vllm"]
    swarm_env = environment(services["registry"])
    home, adapters = swarm_env["SWARM_HOME"], swarm_env["SWARM_ADAPTERS_DIR"]
    want_flags, want_env = expected_vllm(home, adapters)
    have_flags, have_env = flags(gpu.get("command", [])), environment(gpu)
    for name, value in want_flags.items():
        if have_flags.get(name, "missing") != value:
            found.append(f"vllm: {name} is {have_flags.get(name, 'missing')}, not {value}")
    for name, value in want_env.items():
        if have_env.get(name) != value:
            found.append(f"vllm: {name}={have_env.get(name)!r}, not {value!r}")
    # The registry hands vLLM snapshot paths under SWARM_HOME: the same volume, the same path.
    home_volume = next(
        (str(v).split(":")[0] for v in services["registry"].get("volumes", [])
         if str(v).split(":")[1] == home),
        None,
    )  # fmt: skip
    if not any(str(v).startswith(f"{home_volume}:{home}") for v in gpu.get("volumes", [])):
        found.append(f"vllm: does not see the swarm home volume at {home}")
    return found


def dockerfile_problems(text: str) -> list[str]:
    found: list[str] = []
    stages = re.split(r"^FROM\s", text, flags=re.MULTILINE)[1:]
    if len(stages) < 2 or "COPY --from=" not in stages[-1]:
        found.append("not multi-stage (the last stage must copy from an earlier one)")
    users = re.findall(r"^USER\s+(\S+)", stages[-1] if stages else "", re.MULTILINE)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        found.append("the final stage runs as root")
    if not re.search(r"^ARG DEVICE=(cpu|gpu)\s*$", text, re.MULTILINE):
        found.append("no DEVICE build arg with a default")
    cpu = re.search(r'if \[ "\$DEVICE" = "cpu" \]; then(.*?)else(.*?)fi', text, re.DOTALL)
    if cpu is None:
        found.append("no CPU/GPU branch on $DEVICE")
    else:
        cpu_branch, gpu_branch = cpu.group(1), cpu.group(2)
        if "'.[cpu]'" not in cpu_branch or f"--extra-index-url {PYTORCH_CPU_INDEX}" not in (
            cpu_branch
        ):
            found.append("the CPU variant does not install .[cpu] with PyTorch's CPU index")
        if "pip uninstall -y torchvision torchaudio torchcodec" not in cpu_branch:
            found.append("the CPU variant keeps torchvision/torchaudio/torchcodec")
        if "'.[gpu]'" not in gpu_branch:
            found.append("the GPU variant does not install .[gpu]")
    settings = {name.upper() for name in Settings.model_fields}
    for key in re.findall(r"\b(SWARM_[A-Z0-9_]+)=", text):
        if key.removeprefix("SWARM_") not in settings:
            found.append(f"{key} is not a setting")
    return found


def mutate(compose: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(compose)
    target = broken
    for key in path[:-1]:
        target = target.setdefault(key, {})
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return broken


def test_compose_file_lines_up() -> None:
    assert problems(COMPOSE) == []


def test_the_gpu_vllm_service_runs_what_serve_model_runs() -> None:
    assert vllm_mirror_problems(COMPOSE) == []


def test_the_dockerfile_is_multi_stage_non_root_with_cpu_and_gpu_variants() -> None:
    assert dockerfile_problems(DOCKERFILE) == []
    # compose builds the image it names, with a device the Dockerfile knows.
    for name in ("api", "worker", "model-prepare", "vllm-cpu"):
        assert COMPOSE["services"][name]["build"]["args"]["DEVICE"] in ("cpu", "gpu")


def test_every_swarm_command_is_known_to_the_checks() -> None:
    commands = swarm_commands()
    for path in [("api",), ("serve-model",), ("model", "prepare"), ("worker",), ("registry",)]:
        assert path in commands
    assert is_swarm_command(["swarm", "worker", "--specialist", "sql"])
    assert not is_swarm_command(["swarm", "model", "prepar"])
    assert not is_swarm_command(["python", "-m", "swarm"])


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("services", "worker", "command"), ["swarm", "wrker"], "not a swarm subcommand"),
        (("services", "api", "environment", "SWARM_API_PORTT"), "1", "is not a setting"),
        (("services", "api", "ports"), ["9999:9999"], "port 8080 is not published"),
        (("services", "api", "ports"), ["8080:8080"], "published on every interface"),
        (("services", "api", "healthcheck"), DELETE, "api: no healthcheck"),
        (("services", "worker", "depends_on", "ghost"), {}, "unknown service ghost"),
        (("services", "worker", "volumes"), ["nowhere:/x"], "volume nowhere is not declared"),
        (("services", "redis", "command"), ["redis-server"], "no AOF persistence"),
        (("services", "worker", "environment", "SWARM_VLLM_URLS"), "http://vllm:9000",
         "misses vLLM's port"),
        (("services", "vllm", "command"), ["--port=9000"], "vllm: does not listen on 8000"),
        (("services", "vllm-cpu", "healthcheck", "test"), ["CMD", "true"],
         "vllm-cpu: healthcheck does not probe"),
        (("services", "vllm", "volumes"), ["swarm-home:/data/swarm"],
         "vllm: the adapters folder is not mounted"),
        (("services", "vllm-cpu", "depends_on", "model-prepare"),
         {"condition": "service_started"}, "vllm-cpu: does not wait for model-prepare"),
        (("services", "registry", "depends_on", "vllm"), {"condition": "service_started"},
         "registry: does not wait for a healthy vllm"),
        (("services", "model-prepare", "command"), ["swarm", "version"],
         "does not run `swarm model prepare`"),
    ],
)  # fmt: skip
def test_each_compose_check_catches_its_mistake(
    path: tuple[str, ...], value: Any, expected: str
) -> None:
    found = problems(mutate(COMPOSE, path, value))
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("services", "vllm", "command", 5), "--max-loras=8", "--max-loras is 8, not 4"),
        (("services", "vllm", "environment", "VLLM_ALLOW_RUNTIME_LORA_UPDATING"), "False",
         "VLLM_ALLOW_RUNTIME_LORA_UPDATING='False'"),
        (("services", "vllm", "environment", "VLLM_PLUGINS"), "lora_filesystem_resolver",
         "VLLM_PLUGINS='lora_filesystem_resolver', not ''"),
        (("services", "vllm", "volumes"), ["./adapters:/adapters:ro"],
         "does not see the swarm home volume"),
    ],
)  # fmt: skip
def test_the_mirror_check_catches_a_drift_from_serve_model(
    path: tuple[Any, ...], value: Any, expected: str
) -> None:
    assert COMPOSE["services"]["vllm"]["command"][5].startswith("--max-loras=")
    found = vllm_mirror_problems(mutate(COMPOSE, path, value))
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("USER swarm", "USER root", "runs as root"),
        ("FROM python:${PYTHON}-slim AS runtime", "", "not multi-stage"),
        ("ARG DEVICE=cpu", "ARG DEVICE", "no DEVICE build arg"),
        (f" --extra-index-url {PYTORCH_CPU_INDEX}", "", "PyTorch's CPU index"),
        ("pip uninstall -y torchvision torchaudio torchcodec", "true", "keeps torchvision"),
        ("'.[gpu]'", "vllm", "does not install .[gpu]"),
        ("SWARM_HOME=", "SWARM_HOMEDIR=", "SWARM_HOMEDIR is not a setting"),
    ],
)
def test_each_dockerfile_check_catches_its_mistake(old: str, new: str, expected: str) -> None:
    assert old in DOCKERFILE
    found = dockerfile_problems(DOCKERFILE.replace(old, new))
    assert any(expected in p for p in found), found


def compose_cli() -> list[str] | None:
    """``docker compose`` (the plugin), else a standalone Compose v2 binary, else None."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for argv in candidates:
        if shutil.which(argv[0]) is None:
            continue
        version = subprocess.run([*argv, "version"], capture_output=True, text=True)
        if version.returncode == 0 and "version v2" in version.stdout:
            return argv
    return None


def test_docker_compose_config_accepts_both_profiles() -> None:
    argv = compose_cli()
    if argv is None:
        pytest.skip("no Docker Compose v2 here (docker compose plugin or docker-compose v2)")
    for profile in ("gpu", "cpu"):
        result = subprocess.run(
            [*argv, "--profile", profile, "config", "--services"],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        vllm = "vllm" if profile == "gpu" else "vllm-cpu"
        assert set(result.stdout.split()) == SERVICES - {"vllm", "vllm-cpu"} | {vllm}
