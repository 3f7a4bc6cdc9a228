"""The one settings object, read from ``SWARM_*`` environment variables.

Every default works on a laptop: Redis on localhost, vLLM on localhost:8000, adapters in
``./adapters`` and the swarm home in ``~/.cache/swarm``. ``swarm doctor`` prints the effective
values.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from swarm.errors import ConfigurationError

SSE_KEEPALIVE_MAX_S = 30.0
"""A blocking read on an event stream must end before the Redis client's socket timeout
(``swarm.connections.SOCKET_TIMEOUT_S``), or every quiet stream would fail."""

DEFAULT_BASE_MODEL = "gemma3-270m"
"""The embedded default: Gemma 3 270M (under the Gemma Terms of Use), built by ``swarm model
prepare``. Chosen by measurement: the built-ins trained on it beat the same data and command on
SmolLM2-135M-Instruct on every real set (docs/benchmarks.md, "Base models")."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Runtime configuration. Each field maps to ``SWARM_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(
        env_prefix="SWARM_", env_file=None, extra="ignore", frozen=True
    )

    # Redis
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description=(
            "Redis URL (redis://, rediss:// or unix://). A Redis Cluster node's URL works as it "
            "is; redis+cluster:// or rediss+cluster:// asks for a cluster client outright."
        ),
    )

    # Model serving
    vllm_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000"],
        description="Comma-separated base URLs of vLLM OpenAI-compatible servers.",
    )
    vllm_api_key: SecretStr | None = Field(None, description="API key sent to vLLM, if any.")
    vllm_device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="Which vLLM build serve-model uses; auto picks gpu if CUDA is present."
    )
    vllm_host: str = Field("127.0.0.1", description="Address `swarm serve-model` binds.")
    vllm_fs_resolver: bool = Field(
        False,
        description="Let vLLM load any adapter folder by name from the adapters dir on request "
        "(its filesystem LoRA resolver). Off: the registry loads each validated folder itself.",
    )
    vllm_port: int = Field(8000, description="Port that `swarm serve-model` listens on.")
    vllm_extra_args: str = Field("", description="Extra arguments passed to the vLLM server.")
    vllm_startup_timeout_s: float = Field(300.0, description="How long serve-model waits.")
    base_model: str = Field(
        DEFAULT_BASE_MODEL,
        description="Base model: the embedded default, an HF model id, or a local path.",
    )
    max_loras: int = Field(4, description="vLLM --max-loras: adapters in one batch.")
    max_lora_rank: int = Field(64, description="vLLM --max-lora-rank: largest accepted rank.")
    max_cpu_loras: int = Field(16, description="vLLM --max-cpu-loras: adapters cached in RAM.")
    max_model_len: int = Field(2048, description="vLLM --max-model-len.")
    grouped_cpu_lora: bool = Field(
        True,
        description="On CPU, apply LoRA with one matmul per adapter (swarm.serving.cpulora) "
        "instead of vLLM's per-token weight copies.",
    )

    # Model client
    model_timeout_s: float = Field(120.0, description="Timeout of one model call.")
    model_retries: int = Field(3, description="Retries on connection errors and 5xx.")

    # Files
    adapters_dir: Path = Field(Path("adapters"), description="Drop-in adapter folders.")
    home: Path = Field(
        Path("~/.cache/swarm"), description="Swarm home: prepared models, caches, runs."
    )

    # Bus
    redis_max_connections: int = Field(
        512,
        ge=8,
        description="Redis connections one process may hold (its pool; per node on a cluster): "
        "more than SWARM_API_MAX_STREAMS, since each open event stream holds one.",
    )
    stream_maxlen: int = Field(100_000, description="Approximate cap on each stream's length.")
    heartbeat_timeout_s: float = Field(
        15.0, description="A consumer silent this long is dead; its messages are reclaimed."
    )
    max_deliveries: int = Field(5, description="Deliveries after which a message is dead-lettered.")
    consumer_concurrency: int = Field(16, description="Messages one consumer handles at once.")
    dedupe_ttl_s: int = Field(
        600,
        description="How long published and handled message ids are remembered (it must "
        "outlast max_deliveries x heartbeat_timeout_s; memory grows with rate x window).",
    )

    # Specialists' rules
    rules_budget_s: float = Field(
        5.0,
        gt=0,
        description="Time budget of one step's deterministic finish and check (run in a child "
        "process); past it the step fails with that reason and is not redelivered.",
    )
    rules_processes: int = Field(
        2, ge=1, description="Child processes per worker that run specialists' finish and check."
    )
    max_input_chars: int = Field(
        100_000,
        ge=1,
        description="Longest step input (its JSON text) a worker runs; longer fails the step.",
    )

    # Teacher (frontier model)
    teacher_url: str | None = Field(None, description="OpenAI-compatible teacher base URL.")
    teacher_model: str | None = Field(None, description="Teacher model name.")
    teacher_api_key: SecretStr | None = Field(None, description="Teacher API key.")
    teacher_input_usd_per_mtok: float = Field(
        2.5, description="Teacher price, USD per million prompt tokens (set your provider's)."
    )
    teacher_output_usd_per_mtok: float = Field(
        10.0, description="Teacher price, USD per million completion tokens."
    )
    teacher_daily_usd: float = Field(
        100.0,
        ge=0,
        description="Most the deployment spends on the teacher per UTC day; past it steps fail "
        "with that reason instead of escalating. 0: no cap.",
    )
    teacher_concurrency: int = Field(8, description="Teacher requests in flight at once.")
    teacher_retries: int = Field(4, description="Teacher retries on 429, 5xx and timeouts.")
    teacher_timeout_s: float = Field(60.0, description="Timeout of one teacher request.")
    escalation_retention: int = Field(
        10_000, description="Escalations kept per specialist for retraining (stream length)."
    )
    local_gpu_usd_per_hour: float = Field(
        2.0, description="Price of one GPU-hour serving the local model (for cost accounting)."
    )
    local_tokens_per_s: float = Field(
        2000.0, description="Measured vLLM throughput in tokens/s (bench/serving.py tells)."
    )
    teacher_cache: Path | None = Field(
        None,
        description="Teacher reply cache (SQLite); default $SWARM_HOME/teacher-cache.sqlite.",
    )

    # HTTP API
    api_host: str = Field("127.0.0.1", description="Address `swarm api` binds.")
    api_port: int = Field(8080, description="Port `swarm api` listens on.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated bearer tokens; empty means no auth."
    )
    api_tasks_per_minute: int = Field(
        600,
        ge=0,
        description="Tasks one API key (or all anonymous callers together) may submit per "
        "minute, counted in Redis across API replicas; 0: no limit.",
    )
    api_max_streams: int = Field(
        256, ge=1, description="Event streams one API process serves at once."
    )
    api_max_streams_per_key: int = Field(
        16, ge=1, description="Event streams one API key may hold open on one API process."
    )
    api_allow_anonymous: bool = Field(
        False,
        description="Serve without SWARM_API_KEYS on an address other than loopback. Without it "
        "`swarm api` refuses to start so.",
    )
    api_max_body_bytes: int = Field(
        1 << 20, ge=1, description="Largest request body; a larger one gets 413 before parsing."
    )
    api_max_deadline_s: float = Field(
        86_400.0, gt=0, description="Furthest deadline a task may ask for."
    )
    api_idempotency_wait_s: float = Field(
        5.0,
        gt=0,
        description="How long a repeated Idempotency-Key waits for its first request to store "
        "the task.",
    )
    api_sse_keepalive_s: float = Field(
        5.0,
        gt=0,
        lt=SSE_KEEPALIVE_MAX_S,
        description="Longest silence on an event stream before a keepalive comment (under the "
        "Redis client's 30 s socket timeout).",
    )
    api_sse_max_s: float = Field(
        3_600.0,
        gt=0,
        description="An event stream closes after this long; the client resumes with "
        "Last-Event-ID.",
    )
    api_ready_timeout_s: float = Field(2.0, gt=0, description="Per-dependency timeout of /readyz.")

    log_level: str = Field("INFO", description="Log level.")
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: one object a line with the task id and trace id."
    )
    trace_exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="Where OpenTelemetry spans go (otlp reads OTEL_EXPORTER_OTLP_*)."
    )

    @field_validator("vllm_urls", "api_keys", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("vllm_urls")
    @classmethod
    def _strip_slash(cls, value: list[str]) -> list[str]:
        return [url.rstrip("/") for url in value]

    @field_validator("home", "adapters_dir", "teacher_cache")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @property
    def models_dir(self) -> Path:
        """Where prepared base models live."""
        return self.home / "models"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment.

    Raises :class:`ConfigurationError` naming the first bad variable in one line.
    """
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "SWARM_" + "_".join(str(part) for part in first["loc"]).upper()
        raise ConfigurationError(
            f"invalid settings: {name}={first.get('input')!r}: {first['msg']}"
        ) from exc


def setup_observability(settings: Settings, service: str) -> None:
    """Logging (text or JSON) and tracing for one swarm process, as the settings say."""
    from swarm.logs import setup_logging
    from swarm.tracing import setup_tracing

    setup_logging(settings.log_level, settings.log_format)
    setup_tracing(settings.trace_exporter, service)
