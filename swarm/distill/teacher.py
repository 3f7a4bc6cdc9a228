"""The teacher: a frontier model behind any OpenAI-compatible endpoint, asked for strict JSON.

Distillation labels inputs with it and the cascade escalates to it, so it is careful with money:
every reply is cached on disk keyed by teacher, prompt and input (a re-run never pays twice),
concurrency is bounded, transient failures back off and retry, and tokens and cost are counted
against a price table. A reply that is not JSON of the asked schema is an :class:`InvalidOutput`;
it is still paid for and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from swarm.errors import ConfigurationError, InvalidOutput, ModelUnavailable
from swarm.serving.costs import Prices
from swarm.serving.modelclient import parse_json_output, plain_json_format
from swarm.settings import Settings

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
BACKOFF_MAX_S = 8.0

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Label:
    """One teacher answer: the validated output, what it cost, and whether the cache paid."""

    output: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    cached: bool


@dataclass
class TeacherStats:
    """Running totals over one teacher's life; ``cost_usd`` counts only calls actually paid."""

    requested: int = 0
    cache_hits: int = 0
    calls: int = 0
    retries: int = 0
    invalid: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    invalid_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "cache_hits": self.cache_hits,
            "calls": self.calls,
            "retries": self.retries,
            "invalid": self.invalid,
            "failed": self.failed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


class LabelCache:
    """Raw teacher replies in SQLite, keyed by a digest of teacher, prompt, input and schema.

    The raw text is stored, not the parsed output, so a reply is re-validated on every read:
    tightening a schema never serves a stale answer, and an invalid reply is still never paid
    for twice.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL)"
        )
        self._db.commit()

    @staticmethod
    def key(teacher: str, messages: Messages, schema: dict[str, Any]) -> str:
        blob = json.dumps([teacher, messages, schema], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> tuple[str, int, int] | None:
        row = self._db.execute(
            "SELECT text, prompt_tokens, completion_tokens FROM replies WHERE key = ?", (key,)
        ).fetchone()
        return (str(row[0]), int(row[1]), int(row[2])) if row else None

    def put(self, key: str, text: str, prompt_tokens: int, completion_tokens: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)",
            (key, text, prompt_tokens, completion_tokens),
        )
        self._db.commit()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class Teacher:
    """An OpenAI-compatible chat endpoint asked for ``response_format`` json_schema (strict)."""

    def __init__(
        self,
        *,
        url: str,
        model: str,
        api_key: str | None = None,
        prices: Prices,
        cache: LabelCache | None = None,
        concurrency: int = 8,
        retries: int = 4,
        timeout_s: float = 60.0,
        backoff_s: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.prices = prices
        self.cache = cache
        self.retries = retries
        self.backoff_s = backoff_s
        self.stats = TeacherStats()
        self._slots = asyncio.Semaphore(max(1, concurrency))
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings, *, cache: LabelCache | None = None) -> Teacher:
        """The configured teacher; a :class:`ConfigurationError` says which variable is missing."""
        if not settings.teacher_url:
            raise ConfigurationError(
                "no teacher configured: set SWARM_TEACHER_URL (an OpenAI-compatible base URL) "
                "and SWARM_TEACHER_MODEL, or use --teacher reference for built-in gold labels"
            )
        if not settings.teacher_model:
            raise ConfigurationError("SWARM_TEACHER_MODEL is not set (the teacher's model name)")
        key = settings.teacher_api_key.get_secret_value() if settings.teacher_api_key else None
        return cls(
            url=settings.teacher_url,
            model=settings.teacher_model,
            api_key=key,
            prices=Prices(
                settings.teacher_input_usd_per_mtok, settings.teacher_output_usd_per_mtok
            ),
            cache=cache,
            concurrency=settings.teacher_concurrency,
            retries=settings.teacher_retries,
            timeout_s=settings.teacher_timeout_s,
        )

    @property
    def identity(self) -> str:
        """What the cache keys on: two endpoints serving one model name are two teachers."""
        return f"{self.url}#{self.model}"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Teacher:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def label(
        self,
        messages: Messages,
        schema: dict[str, Any],
        *,
        max_tokens: int = 1024,
        deadline: float | None = None,
    ) -> Label:
        """Ask once (from cache if seen). ``deadline`` is a ``time.monotonic()`` instant.

        Raises :class:`InvalidOutput` for a reply off the schema, :class:`ModelUnavailable`
        when retries or the deadline run out, :class:`ConfigurationError` when the teacher
        refuses the request itself (bad key, unknown model).
        """
        self.stats.requested += 1
        key = LabelCache.key(self.identity, messages, schema)
        cached = self.cache.get(key) if self.cache else None
        if cached is not None:
            self.stats.cache_hits += 1
            text, prompt_tokens, completion_tokens = cached
            return self._parse(text, schema, prompt_tokens, completion_tokens, 0.0, cached=True)
        async with self._slots:
            started = time.perf_counter()
            data = await self._post(messages, schema, max_tokens, deadline)
            latency_ms = (time.perf_counter() - started) * 1000
        try:
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens", 0))
            completion_tokens = int(usage.get("completion_tokens", 0))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            self._count_invalid("malformed completion")
            raise InvalidOutput(f"malformed completion from the teacher: {exc!r}") from exc
        self.stats.calls += 1
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        self.stats.cost_usd += self.prices.cost(prompt_tokens, completion_tokens)
        if self.cache is not None:
            self.cache.put(key, text, prompt_tokens, completion_tokens)
        return self._parse(text, schema, prompt_tokens, completion_tokens, latency_ms, cached=False)

    async def label_all(
        self,
        prompts: Sequence[Messages],
        schema: dict[str, Any],
        *,
        max_tokens: int = 1024,
        on_done: Callable[[], None] | None = None,
    ) -> list[Label | None]:
        """Label every prompt concurrently (bounded); None where the reply was unusable."""

        async def one(messages: Messages) -> Label | None:
            try:
                return await self.label(messages, schema, max_tokens=max_tokens)
            except InvalidOutput:
                return None
            except ModelUnavailable:
                self.stats.failed += 1
                return None
            finally:
                if on_done is not None:
                    on_done()

        return list(await asyncio.gather(*(one(m) for m in prompts)))

    def _parse(
        self,
        text: str,
        schema: dict[str, Any],
        prompt_tokens: int,
        completion_tokens: int,
        latency_ms: float,
        *,
        cached: bool,
    ) -> Label:
        try:
            output = parse_json_output(text, schema)
        except InvalidOutput as exc:
            self._count_invalid(str(exc).split(":")[0])
            raise
        if not isinstance(output, dict):
            self._count_invalid("output is not an object")
            raise InvalidOutput("teacher output is not a JSON object", raw=text)
        cost = 0.0 if cached else self.prices.cost(prompt_tokens, completion_tokens)
        return Label(output, prompt_tokens, completion_tokens, cost, latency_ms, cached)

    def _count_invalid(self, reason: str) -> None:
        self.stats.invalid += 1
        self.stats.invalid_reasons[reason] = self.stats.invalid_reasons.get(reason, 0) + 1

    async def _post(
        self, messages: Messages, schema: dict[str, Any], max_tokens: int, deadline: float | None
    ) -> dict[str, Any]:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": 0.0,
            "max_tokens": max_tokens,
            "response_format": plain_json_format(schema),
        }
        problem = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                response = await self._http.post(
                    f"{self.url}/v1/chat/completions",
                    json=body,
                    timeout=remaining or httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
                retry_after = None
            else:
                if response.status_code < 400:
                    try:
                        data = response.json()
                    except ValueError:
                        problem = "the reply is not JSON"
                        retry_after = None
                    else:
                        if isinstance(data, dict):
                            return data
                        problem = "the reply is not a JSON object"
                        retry_after = None
                elif response.status_code in RETRY_STATUS:
                    problem = f"HTTP {response.status_code}: {_detail(response)}"
                    retry_after = _retry_after(response)
                else:
                    raise ConfigurationError(
                        f"the teacher at {self.url} refused the request with HTTP "
                        f"{response.status_code}: {_detail(response)}"
                    )
            if attempt < self.retries:
                delay = retry_after or min(BACKOFF_MAX_S, self.backoff_s * 2**attempt)
                delay *= 1 + random.random() * 0.25
                if deadline is not None:
                    delay = min(delay, max(0.0, deadline - time.monotonic()))
                await asyncio.sleep(delay)
        raise ModelUnavailable(
            f"teacher at {self.url} failed after {self.retries + 1} attempts "
            f"(or the deadline): {problem}"
        )


def _retry_after(response: httpx.Response) -> float | None:
    with contextlib.suppress(TypeError, ValueError):
        return min(BACKOFF_MAX_S, float(response.headers.get("retry-after", "")))
    return None


def _detail(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:200] or response.reason_phrase


def cache_path(settings: Settings) -> Path:
    """Where teacher replies are cached: one SQLite file, by default under the swarm home."""
    return settings.teacher_cache or settings.home / "teacher-cache.sqlite"
