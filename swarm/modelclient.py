"""Async client for vLLM's OpenAI-compatible API (and any other OpenAI-compatible server).

Structured output goes through ``response_format`` json_schema; vLLM 0.32 silently ignores the
older ``guided_json`` parameter, so it is never used. Constrained decoding can still produce text
that is not valid JSON (raw control characters, or a cut-off at ``max_tokens``), so every output
is parsed and validated against its schema here, in Python.

Errors are translated at this boundary:

- connection errors, connect timeouts, 429 and 5xx are retried with exponential backoff and
  jitter; when the retries run out they become :class:`ModelUnavailable`;
- a read timeout is not retried (the server may still be generating, and a retry would double
  the caller's wait): :class:`ModelUnavailable` at once;
- 404 for a chat model: :class:`UnknownSpecialist`; 401/403: :class:`ConfigurationError`;
  any other 4xx: :class:`UserError` with the server's message;
- an adapter vLLM cannot load (it answers 500 or 404 to ``load_lora_adapter``):
  :class:`InvalidAdapter`, not retried, because loading the same files again fails again.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema

from swarm.errors import (
    ConfigurationError,
    InvalidAdapter,
    InvalidOutput,
    ModelUnavailable,
    UnknownSpecialist,
    UserError,
)
from swarm.settings import Settings

BACKOFF_BASE_S = 0.25
BACKOFF_MAX_S = 4.0
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
"""Statuses worth another try: overload, or a server (or proxy in front of it) in trouble."""
LOAD_RETRY_STATUS = frozenset({429, 502, 503, 504})
"""vLLM answers a failed adapter load with 500; that is the adapter's fault, not transient."""
HEALTH_TIMEOUT_S = 5.0
REPLICA_REFRESH_S = 5.0
"""How often the client re-reads which adapters each vLLM replica has loaded."""
REPLICA_DOWN_S = 10.0
"""How long a replica that refused a connection is skipped."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """One chat completion: the text, its parsed JSON (when a schema was asked for), and more."""

    model: str
    text: str
    json: Any = None
    usage: Usage = field(default_factory=Usage)
    latency_ms: float = 0.0
    finish_reason: str | None = None
    logprobs: list[float] | None = None
    """Log-probability of each generated token, when asked for."""
    top_logprobs: list[dict[str, float]] | None = None
    """Per generated token, the most likely alternatives and their log-probabilities."""


def parse_json_output(text: str, schema: dict[str, Any]) -> Any:
    """Parse and validate model output; InvalidOutput says why it cannot be used.

    Parsing is strict: a raw control character (a literal newline or tab) inside a JSON string
    is refused even though constrained decoding let it through. Such output is not JSON, and
    lenient parsing would hand downstream code strings that no JSON encoder would have written;
    the caller retries instead.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"output is not valid JSON: {exc}", raw=text) from exc
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "output"
        raise InvalidOutput(
            f"output does not match the schema at {where}: {exc.message}", raw=text
        ) from exc
    return value


class ModelClient:
    """Chat completions and LoRA management against one or more OpenAI-compatible servers.

    With several ``settings.vllm_urls`` (vLLM replicas), each call goes to a replica that has
    the requested adapter loaded, the least busy among them, skipping replicas that refused a
    connection lately (:meth:`_route`); adapters are loaded into every replica.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        retries: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.urls = [base_url.rstrip("/")] if base_url else list(settings.vllm_urls)
        if not self.urls:
            raise ConfigurationError("no model server configured: set SWARM_VLLM_URLS")
        key = api_key or (
            settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        )
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.retries = settings.model_retries if retries is None else retries
        self.timeout_s = settings.model_timeout_s if timeout_s is None else timeout_s
        self._http = httpx.AsyncClient(headers=headers, timeout=self.timeout_s)
        # Replica routing state (only used with several SWARM_VLLM_URLS).
        self._loaded: dict[str, set[str]] = {}
        self._inflight: dict[str, int] = {}
        self._down_until: dict[str, float] = {}
        self._refreshed_at = -math.inf

    @property
    def base_url(self) -> str:
        """The server calls go to when no routing applies."""
        return self.urls[0]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        output_schema: dict[str, Any] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 256,
        top_p: float | None = None,
        stop: list[str] | None = None,
        seed: int | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        timeout_s: float | None = None,
    ) -> Completion:
        """One chat completion. With ``output_schema`` the reply is constrained and validated.

        ``model`` is the served base name or a LoRA name (a specialist record's ``lora_name``).
        Raises :class:`InvalidOutput` when the reply is cut off, not JSON, or off-schema.
        """
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if top_p is not None:
            body["top_p"] = top_p
        if stop:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed
        if logprobs or top_logprobs:
            body["logprobs"] = True
            if top_logprobs:
                body["top_logprobs"] = top_logprobs
        if output_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": output_schema, "strict": True},
            }
        await self._refresh_replicas()
        started = time.perf_counter()
        data = await self._request("POST", "/v1/chat/completions", body, timeout_s=timeout_s)
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
            tokens = (choice.get("logprobs") or {}).get("content") or []
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise InvalidOutput(f"malformed completion from {self.base_url}: {exc!r}") from exc
        finish_reason = choice.get("finish_reason")
        parsed = None
        if output_schema is not None:
            if finish_reason == "length":
                raise InvalidOutput(f"output cut off at max_tokens={max_tokens}", raw=text)
            parsed = parse_json_output(text, output_schema)
        return Completion(
            model=model,
            text=text,
            json=parsed,
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            latency_ms=latency_ms,
            finish_reason=finish_reason,
            logprobs=[float(t["logprob"]) for t in tokens] if body.get("logprobs") else None,
            top_logprobs=(
                [
                    {str(a["token"]): float(a["logprob"]) for a in t.get("top_logprobs") or []}
                    for t in tokens
                ]
                if top_logprobs
                else None
            ),
        )

    async def load_adapter(self, lora_name: str, path: str) -> None:
        """Load LoRA weights from ``path`` (as the server sees it) under ``lora_name``.

        Needs ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` on the server (``swarm serve-model`` sets it).
        Raises :class:`InvalidAdapter` when vLLM cannot load the files, with vLLM's reason.
        """
        for url in self.urls:  # every replica, so any of them can take the adapter's calls
            try:
                await self._request(
                    "POST",
                    "/v1/load_lora_adapter",
                    {"lora_name": lora_name, "lora_path": path},
                    retry_status=LOAD_RETRY_STATUS,
                    raw_refusals=True,
                    base=url,
                )
            except _Refused as exc:
                if exc.status in (404, 500):
                    raise InvalidAdapter(
                        lora_name, f"vLLM could not load it: {exc.detail}"
                    ) from exc
                raise exc.translated() from exc
            self._loaded.setdefault(url, set()).add(lora_name)

    async def unload_adapter(self, lora_name: str) -> bool:
        """Unload a LoRA; returns False if the server did not have it (nothing to do)."""
        unloaded = False
        for url in self.urls:
            self._loaded.get(url, set()).discard(lora_name)
            try:
                await self._request(
                    "POST",
                    "/v1/unload_lora_adapter",
                    {"lora_name": lora_name},
                    raw_refusals=True,
                    base=url,
                )
            except _Refused as exc:
                if exc.status == 404:
                    continue
                raise exc.translated() from exc
            unloaded = True
        return unloaded

    async def list_models(self) -> list[str]:
        """Names the server answers to: the base model and every loaded LoRA."""
        data = await self._request("GET", "/v1/models")
        try:
            return [str(m["id"]) for m in data["data"]]
        except (KeyError, TypeError) as exc:
            raise ModelUnavailable(f"{self.base_url}/v1/models answered {data!r:.200}") from exc

    async def health(self) -> bool:
        """True when the server answers ``/health`` with 200; never raises."""
        try:
            response = await self._http.get(
                f"{self.base_url}/health", timeout=min(HEALTH_TIMEOUT_S, self.timeout_s)
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _route(self, body: Any) -> str:
        """Adapter affinity: among replicas not marked down, prefer those that list the model,
        then the one with the fewest calls in flight (the first, on a tie)."""
        if len(self.urls) == 1:
            return self.urls[0]
        now = time.monotonic()
        candidates = [u for u in self.urls if self._down_until.get(u, 0.0) <= now] or self.urls
        model = body.get("model") if isinstance(body, dict) else None
        if model:
            with_model = [u for u in candidates if model in self._loaded.get(u, ())]
            candidates = with_model or candidates
        return min(candidates, key=lambda u: self._inflight.get(u, 0))

    async def _refresh_replicas(self) -> None:
        """Which adapters each replica has loaded, at most every REPLICA_REFRESH_S."""
        now = time.monotonic()
        if len(self.urls) == 1 or now - self._refreshed_at < REPLICA_REFRESH_S:
            return
        self._refreshed_at = now

        async def one(url: str) -> None:
            try:
                response = await self._http.get(f"{url}/v1/models", timeout=HEALTH_TIMEOUT_S)
                self._loaded[url] = {str(m["id"]) for m in response.json()["data"]}
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                self._down_until[url] = time.monotonic() + REPLICA_DOWN_S

        await asyncio.gather(*(one(url) for url in self.urls))

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout_s: float | None = None,
        retry_status: Collection[int] = RETRY_STATUS,
        raw_refusals: bool = False,
        base: str | None = None,
    ) -> Any:
        """Send with retries and backoff on connection errors and retryable statuses.

        Any other 4xx/5xx raises its translated swarm error, or with ``raw_refusals`` a
        :class:`_Refused` for the caller to translate in its own terms.
        """
        pinned = base is not None
        base = base or self._route(body)
        url = f"{base}{path}"
        # An explicit timeout_s is the caller's whole budget (a step's deadline): retries must
        # fit inside it. Otherwise each attempt gets the configured model timeout.
        budget_end = None if timeout_s is None else time.monotonic() + max(timeout_s, 0.0)
        last = ""
        attempts = 0
        for attempt in range(self.retries + 1):
            timeout = self.timeout_s
            if attempt:
                delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2
                if budget_end is not None and time.monotonic() + delay >= budget_end:
                    break
                await asyncio.sleep(delay)
            if budget_end is not None:
                timeout = max(budget_end - time.monotonic(), 0.001)
            attempts += 1
            sent_to = base
            self._inflight[sent_to] = self._inflight.get(sent_to, 0) + 1
            try:
                response = await self._http.request(method, url, json=body, timeout=timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last = f"cannot connect to {base}: {type(exc).__name__}: {exc}"
                if not pinned and len(self.urls) > 1:
                    # Skip this replica for a while; the retry goes to another one.
                    self._down_until[base] = time.monotonic() + REPLICA_DOWN_S
                    base = self._route(body)
                    url = f"{base}{path}"
                continue
            except httpx.TimeoutException as exc:
                raise ModelUnavailable(f"{url} timed out after {timeout:g}s") from exc
            except httpx.TransportError as exc:
                # The connection broke mid-request (server restart, reset): worth a retry.
                last = f"connection to {base} failed: {type(exc).__name__}: {exc}"
                continue
            finally:
                self._inflight[sent_to] -= 1
            if response.status_code in retry_status:
                last = f"{url} answered {response.status_code}: {_detail(response)}"
                continue
            if response.status_code >= 400:
                refused = _Refused(url, response.status_code, _detail(response), body)
                if raw_refusals and response.status_code not in (401, 403):
                    raise refused
                raise refused.translated()
            if "json" not in response.headers.get("content-type", ""):
                return response.text
            try:
                return response.json()
            except ValueError as exc:
                raise ModelUnavailable(f"{url} answered with broken JSON: {exc}") from exc
        raise ModelUnavailable(f"{last} (after {attempts} attempts)")


class _Refused(Exception):
    """A 4xx (or non-retryable 5xx) answer, kept raw so each endpoint can translate it."""

    def __init__(self, url: str, status: int, detail: str, body: Any) -> None:
        super().__init__(f"{url} answered {status}: {detail}")
        self.url = url
        self.status = status
        self.detail = detail
        self.body = body

    def translated(self) -> Exception:
        """The swarm error for this answer."""
        if self.status in (401, 403):
            return ConfigurationError(
                f"{self.url} refused our credentials ({self.status}); check SWARM_VLLM_API_KEY"
            )
        model = self.body.get("model") if isinstance(self.body, dict) else None
        if self.status == 404 and model is not None:
            return UnknownSpecialist(f"the model server does not serve {model!r}: {self.detail}")
        if self.status >= 500:
            return ModelUnavailable(f"{self.url} failed ({self.status}): {self.detail}")
        return UserError(f"{self.url} refused the request ({self.status}): {self.detail}")


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message", data))[:300]
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])[:300]
    return str(data)[:300]
