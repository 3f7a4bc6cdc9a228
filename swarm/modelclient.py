"""Async client for vLLM's OpenAI-compatible API (and any other OpenAI-compatible server).

Structured output goes through ``response_format`` json_schema; vLLM 0.32 silently ignores the
older ``guided_json`` parameter, so it is never used. Constrained decoding can still produce text
that is not valid JSON (raw control characters, or a cut-off at ``max_tokens``), so every output
is parsed and validated against its schema here, in Python.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema

from swarm.errors import InvalidOutput, ModelUnavailable, UnknownSpecialist, UserError
from swarm.settings import Settings

BACKOFF_BASE_S = 0.25
BACKOFF_MAX_S = 4.0


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


def parse_json_output(text: str, schema: dict[str, Any]) -> Any:
    """Parse and validate model output; InvalidOutput says why it cannot be used."""
    try:
        value = json.loads(text)  # strict: raw control characters inside strings are refused
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
    """Chat completions and LoRA management against one OpenAI-compatible server."""

    def __init__(
        self,
        settings: Settings,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        retries: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.base_url = (base_url or settings.vllm_urls[0]).rstrip("/")
        key = api_key or (
            settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        )
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.retries = settings.model_retries if retries is None else retries
        self.timeout_s = timeout_s or settings.model_timeout_s
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=self.timeout_s
        )

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
        logprobs: bool = False,
        seed: int | None = None,
        timeout_s: float | None = None,
    ) -> Completion:
        """One chat completion. With ``output_schema`` the reply is constrained and validated."""
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if top_p is not None:
            body["top_p"] = top_p
        if seed is not None:
            body["seed"] = seed
        if logprobs:
            body["logprobs"] = True
        if output_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": output_schema, "strict": True},
            }
        started = time.perf_counter()
        data = await self._request("POST", "/v1/chat/completions", json=body, timeout_s=timeout_s)
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise InvalidOutput(f"malformed completion from {self.base_url}: {exc}") from exc
        token_logprobs = None
        if logprobs and choice.get("logprobs"):
            token_logprobs = [float(t["logprob"]) for t in choice["logprobs"].get("content") or []]
        parsed = None
        if output_schema is not None:
            if choice.get("finish_reason") == "length":
                raise InvalidOutput(f"output cut off at max_tokens={max_tokens}", raw=text)
            parsed = parse_json_output(text, output_schema)
        return Completion(
            model=model,
            text=text,
            json=parsed,
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            latency_ms=latency_ms,
            finish_reason=choice.get("finish_reason"),
            logprobs=token_logprobs,
        )

    async def load_adapter(self, lora_name: str, path: str) -> None:
        """Load a LoRA into vLLM under ``lora_name`` (needs VLLM_ALLOW_RUNTIME_LORA_UPDATING)."""
        await self._request(
            "POST", "/v1/load_lora_adapter", json={"lora_name": lora_name, "lora_path": path}
        )

    async def unload_adapter(self, lora_name: str) -> None:
        await self._request("POST", "/v1/unload_lora_adapter", json={"lora_name": lora_name})

    async def list_models(self) -> list[str]:
        data = await self._request("GET", "/v1/models")
        return [str(m["id"]) for m in data.get("data", [])]

    async def health(self) -> bool:
        try:
            response = await self._http.get("/health", timeout=5)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _request(
        self, method: str, path: str, *, json: Any = None, timeout_s: float | None = None
    ) -> Any:
        """Send with retries and backoff on connection errors and 5xx; translate errors."""
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            try:
                response = await self._http.request(
                    method, path, json=json, timeout=timeout_s or self.timeout_s
                )
            except httpx.TimeoutException as exc:
                raise ModelUnavailable(
                    f"{self.base_url}{path} timed out after {timeout_s or self.timeout_s:g}s"
                ) from exc
            except httpx.TransportError as exc:
                last = f"cannot connect to {self.base_url}: {type(exc).__name__}: {exc}"
                continue
            if response.status_code >= 500:
                last = f"{self.base_url}{path} answered {response.status_code}: {_detail(response)}"
                continue
            if response.status_code == 404 and path == "/v1/chat/completions":
                raise UnknownSpecialist(
                    f"the model server does not serve {json['model']!r}: {_detail(response)}"
                )
            if response.status_code >= 400:
                raise UserError(
                    f"{self.base_url}{path} refused the request "
                    f"({response.status_code}): {_detail(response)}"
                )
            content_type = response.headers.get("content-type", "")
            return response.json() if "json" in content_type else response.text
        raise ModelUnavailable(f"{last} (after {self.retries + 1} attempts)")


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message", data))[:300]
    return str(data)[:300]
