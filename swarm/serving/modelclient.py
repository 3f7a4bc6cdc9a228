"""Async client for vLLM's OpenAI-compatible API (and any other OpenAI-compatible server).

Structured output goes through ``response_format`` (vLLM 0.32 silently ignores the older
``guided_json`` parameter, so it is never used), as the schema in an xgrammar structural tag that
allows at most one whitespace character in a row between JSON tokens (:func:`capped_json_format`).
A plain ``json_schema`` grammar allows any run of whitespace, and a small model that wants to end
its answer before the schema lets it can fill all of ``max_tokens`` with newlines (the pretrained
Gemma 3 270M did, greedy, in prompt-only steps of the end-to-end test). One character still allows
the ``", "`` and ``": "`` that specialists are trained and prompted with. A server that refuses the
structural tag (another backend, an older vLLM, a schema xgrammar cannot compile) is asked again
with the plain grammar, and so is every later call with that schema. Constrained decoding can still
produce text that is not valid JSON (raw control characters, or a cut-off at ``max_tokens``), so
every output is parsed and validated against its schema here, in Python.

Errors are translated at this boundary:

- connection errors, connect timeouts, 429 and 5xx are retried with exponential backoff and
  jitter; when the retries run out they become :class:`ModelUnavailable`;
- a read timeout is not retried (the server may still be generating, and a retry would double
  the caller's wait): :class:`ModelUnavailable` at once;
- 404 for a chat model: :class:`UnknownSpecialist`; 401/403: :class:`ConfigurationError`;
  any other 4xx: :class:`UserError` with the server's message;
- an adapter vLLM cannot load (it answers 500 or 404 to ``load_lora_adapter``):
  :class:`InvalidAdapter`, not retried, because loading the same files again fails again.

Several servers (``SWARM_VLLM_URLS`` lists vLLM replicas) are routed by adapter affinity; see
:meth:`ModelClient._route`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from swarm.errors import (
    ConfigurationError,
    InvalidAdapter,
    InvalidOutput,
    ModelUnavailable,
    UnknownSpecialist,
    UserError,
)
from swarm.schemas import schema_problem
from swarm.serving.transport import Broken, CannotConnect, Http, TimedOut, answer_detail
from swarm.settings import Settings

T = TypeVar("T")

BACKOFF_BASE_S = 0.25
BACKOFF_MAX_S = 4.0
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
"""Statuses worth another try: overload, or a server (or proxy in front of it) in trouble."""
LOAD_RETRY_STATUS = frozenset({429, 502, 503, 504})
"""vLLM answers a failed adapter load with 500; that is the adapter's fault, not transient."""
HEALTH_TIMEOUT_S = 5.0
REPLICA_REFRESH_S = 5.0
"""How long what a replica's ``/v1/models`` said is trusted before it is read again."""
REPLICA_DOWN_S = 10.0
"""How long a replica that refused a connection is passed over (unless every one is)."""
ALREADY_LOADED = "has already been loaded"
"""vLLM's 400 to a load under a name it already serves; adapter names are unique per version,
so for us that is success."""


MAX_WHITESPACE_RUN = 1
"""Whitespace characters a JSON answer may have in a row between tokens (not inside strings)."""


def capped_json_format(schema: dict[str, Any]) -> dict[str, Any]:
    """``response_format`` for JSON matching ``schema``, with :data:`MAX_WHITESPACE_RUN`."""
    return {
        "type": "structural_tag",
        "format": {
            "type": "json_schema",
            "json_schema": schema,
            "max_whitespace_cnt": MAX_WHITESPACE_RUN,
        },
    }


def plain_json_format(schema: dict[str, Any]) -> dict[str, Any]:
    """``response_format`` for JSON matching ``schema``, the OpenAI way."""
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


def requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The output schema a chat request body asks for, in either form; None when it asks none."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "structural_tag":
        return response_format["format"]["json_schema"]
    if response_format.get("type") == "json_schema":
        return response_format["json_schema"]["schema"]
    return None


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
    problem = schema_problem(schema, value, root="output")
    if problem is not None:
        raise InvalidOutput(f"output does not match the schema {problem}", raw=text)
    return value


@dataclass
class _Replica:
    """What one client knows about one model server, for routing."""

    url: str
    models: set[str] = field(default_factory=set)
    """Names it serves: from its ``/v1/models``, this client's loads and its answered calls."""
    in_flight: int = 0
    down_until: float = 0.0
    """Passed over until then (monotonic clock), after it refused a connection."""


class ModelClient:
    """Chat completions and LoRA management against one or more OpenAI-compatible servers.

    With several ``settings.vllm_urls`` (vLLM replicas), each call goes to a replica that has
    the requested adapter loaded, the least busy among them, passing over replicas that refused
    a connection lately (:meth:`_route`); a call whose replica fails moves to another at once.
    Adapters are loaded into every reachable replica.
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
        self._http = Http(headers)
        self._replicas = {url: _Replica(url) for url in self.urls}
        self._turn = 0  # breaks ties between equally busy replicas in turn
        self._refreshed_at = -math.inf
        self._refreshing: asyncio.Task[None] | None = None
        self._known = False  # whether every replica's /v1/models has been asked once
        self._uncapped: set[str] = set()
        """Schemas (as canonical JSON) a server refused in a structural tag: sent plain."""

    @property
    def base_url(self) -> str:
        """The server calls go to when no routing applies."""
        return self.urls[0]

    async def aclose(self) -> None:
        task = self._refreshing
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await task  # RuntimeError: it belonged to an event loop that is gone
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
        await self._refresh_replicas()
        started = time.perf_counter()
        data = await self._chat(body, output_schema, timeout_s)
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
        With several replicas it goes into every one that answers, so any of them can take the
        adapter's calls; one that was down is filled in later, because :meth:`list_models` then
        lacks the name and the registry loads it again. A name a server already serves counts as
        loaded there.

        Raises :class:`InvalidAdapter` when vLLM cannot load the files, with vLLM's reason, and
        :class:`ModelUnavailable` when no replica could be reached.
        """

        async def load(replica: _Replica) -> bool:
            try:
                await self._request(
                    "POST",
                    "/v1/load_lora_adapter",
                    {"lora_name": lora_name, "lora_path": path},
                    retry_status=LOAD_RETRY_STATUS,
                    raw_refusals=True,
                    base=replica.url,
                )
            except _Refused as exc:
                if exc.status == 400 and ALREADY_LOADED in exc.detail:
                    pass
                elif exc.status in (404, 500):
                    raise InvalidAdapter(
                        lora_name, f"vLLM could not load it: {exc.detail}"
                    ) from exc
                else:
                    raise exc.translated() from exc
            replica.models.add(lora_name)
            return True

        await self._on_every_replica(load)

    async def unload_adapter(self, lora_name: str) -> bool:
        """Unload a LoRA from every replica; False if none had it (nothing to do).

        A replica that cannot be reached is left out as long as another one answered.
        """

        async def unload(replica: _Replica) -> bool:
            replica.models.discard(lora_name)
            try:
                await self._request(
                    "POST",
                    "/v1/unload_lora_adapter",
                    {"lora_name": lora_name},
                    raw_refusals=True,
                    base=replica.url,
                )
            except _Refused as exc:
                if exc.status == 404:
                    return False
                raise exc.translated() from exc
            return True

        return any(await self._on_every_replica(unload))

    async def list_models(self) -> list[str]:
        """Names the server answers to: the base model and every loaded LoRA.

        With several replicas: the names that every reachable replica serves, so that a replica
        which restarted (and forgot its runtime-loaded adapters) makes the registry load them
        again. Raises :class:`ModelUnavailable` only when no replica answers.
        """

        async def read(replica: _Replica) -> list[str]:
            data = await self._request("GET", "/v1/models", base=replica.url)
            try:
                names = [str(m["id"]) for m in data["data"]]
            except (KeyError, TypeError) as exc:
                raise ModelUnavailable(f"{replica.url}/v1/models answered {data!r:.200}") from exc
            replica.models = set(names)
            return names

        lists = await self._on_every_replica(read)
        common = set.intersection(*(set(names) for names in lists))
        return [name for name in lists[0] if name in common]

    async def health(self) -> bool:
        """True when a server (any replica) answers ``/health`` with 200; never raises."""

        async def healthy(url: str) -> bool:
            try:
                answer = await self._http.send(
                    "GET", f"{url}/health", timeout_s=min(HEALTH_TIMEOUT_S, self.timeout_s)
                )
            except (CannotConnect, TimedOut, Broken):
                return False
            return answer.status_code == 200

        return any(await asyncio.gather(*(healthy(url) for url in self.urls)))

    async def _on_every_replica(self, call: Callable[[_Replica], Awaitable[T]]) -> list[T]:
        """``call`` on every replica at once; the answers of those that could be reached.

        A replica that cannot be reached is left out while another answers; any other error is
        raised (the first, in replica order).
        """
        outcomes = await asyncio.gather(
            *(call(replica) for replica in self._replicas.values()), return_exceptions=True
        )
        answers = [o for o in outcomes if not isinstance(o, BaseException)]
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        for error in errors:
            if not isinstance(error, ModelUnavailable):
                raise error
        if errors and not answers:
            raise errors[0]
        return answers

    def _route(self, body: Any, *, avoid: Collection[str] = ()) -> str:
        """The server for one call: adapter affinity first, then the fewest calls in flight.

        Among the replicas not passed over (one that refused a connection within
        ``REPLICA_DOWN_S``, or one this call already failed on), those that serve
        ``body["model"]`` are preferred, so an adapter's calls stay where it is loaded; then the
        one with the fewest calls in flight from this client. Equally busy replicas take turns,
        so that idle ones share the work. With no better choice, any replica: the call then
        fails with the real error.
        """
        if len(self.urls) == 1:
            return self.urls[0]
        now = time.monotonic()
        replicas = list(self._replicas.values())
        untried = [r for r in replicas if r.url not in avoid] or replicas
        pool = [r for r in untried if r.down_until <= now] or untried
        model = body.get("model") if isinstance(body, dict) else None
        if model:
            pool = [r for r in pool if model in r.models] or pool
        least = min(r.in_flight for r in pool)
        ties = [r for r in pool if r.in_flight == least]
        self._turn += 1
        return ties[self._turn % len(ties)].url

    async def _refresh_replicas(self) -> None:
        """Re-read every replica's ``/v1/models`` once the last reading is REPLICA_REFRESH_S old.

        The first reading is awaited, so that the first call is already routed by affinity;
        later ones run in the background, so a slow or unreachable replica never delays a call.
        """
        if len(self.urls) == 1:
            return
        now = time.monotonic()
        idle = self._refreshing is None or self._refreshing.done()
        if idle and now - self._refreshed_at >= REPLICA_REFRESH_S:
            self._refreshed_at = now
            self._refreshing = asyncio.create_task(self._read_replicas())
        if not self._known and self._refreshing is not None:
            await asyncio.shield(self._refreshing)

    async def _read_replicas(self) -> None:
        async def read(replica: _Replica) -> None:
            try:
                answer = await self._http.send(
                    "GET",
                    f"{replica.url}/v1/models",
                    timeout_s=min(HEALTH_TIMEOUT_S, self.timeout_s),
                )
                names = {str(m["id"]) for m in answer.json()["data"]}
            except CannotConnect:
                replica.down_until = time.monotonic() + REPLICA_DOWN_S
                return
            except (TimedOut, Broken, ValueError, KeyError, TypeError):
                return  # busy, or answering oddly: keep what we knew
            replica.models = names
            replica.down_until = 0.0

        await asyncio.gather(*(read(replica) for replica in self._replicas.values()))
        self._known = True

    async def _chat(
        self, body: dict[str, Any], schema: dict[str, Any] | None, timeout_s: float | None
    ) -> Any:
        """Send a chat body, its schema capped (see the module's docstring) unless refused so."""
        if schema is None:
            return await self._request("POST", "/v1/chat/completions", body, timeout_s=timeout_s)
        key = json.dumps(schema, sort_keys=True)
        if key not in self._uncapped:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            capped = {**body, "response_format": capped_json_format(schema)}
            try:
                return await self._request(
                    "POST", "/v1/chat/completions", capped, timeout_s=timeout_s, raw_refusals=True
                )
            except _Refused as exc:
                if exc.status != 400:
                    raise exc.translated() from exc
            if deadline is not None:
                timeout_s = max(deadline - time.monotonic(), 0.001)
        plain = {**body, "response_format": plain_json_format(schema)}
        data = await self._request("POST", "/v1/chat/completions", plain, timeout_s=timeout_s)
        # Only now: a 400 for another reason (a prompt too long) would have been refused again.
        self._uncapped.add(key)
        return data

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

        Unless ``base`` pins the server, each attempt is routed by :meth:`_route`: a replica the
        call failed on is avoided for the rest of the call, and moving on to a replica not yet
        tried happens at once and uses up no retry. Going back to one already tried is a retry,
        after a backoff.

        Any other 4xx/5xx raises its translated swarm error, or with ``raw_refusals`` a
        :class:`_Refused` for the caller to translate in its own terms.
        """
        model = body.get("model") if isinstance(body, dict) else None
        several = len(self.urls) > 1
        # An explicit timeout_s is the caller's whole budget (a step's deadline): retries must
        # fit inside it. Otherwise each attempt gets the configured model timeout.
        budget_end = None if timeout_s is None else time.monotonic() + max(timeout_s, 0.0)
        tried: set[str] = set()
        failed: set[str] = set()
        retried = 0
        last = ""
        attempts = 0
        while True:
            target = base if base is not None else self._route(body, avoid=failed)
            if target in tried:
                if retried == self.retries:
                    break
                retried += 1
                delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (retried - 1))
                delay *= 0.5 + random.random() / 2
                if budget_end is not None and time.monotonic() + delay >= budget_end:
                    break
                await asyncio.sleep(delay)
            elif attempts and budget_end is not None and time.monotonic() >= budget_end:
                break
            timeout = self.timeout_s
            if budget_end is not None:
                timeout = max(budget_end - time.monotonic(), 0.001)
            tried.add(target)
            attempts += 1
            url = f"{target}{path}"
            replica = self._replicas[target]
            replica.in_flight += 1
            try:
                response = await self._http.send(method, url, body, timeout_s=timeout)
            except CannotConnect as exc:
                last = f"cannot connect to {target}: {exc}"
                failed.add(target)
                if several:  # pass it over for a while; other calls go elsewhere too
                    replica.down_until = time.monotonic() + REPLICA_DOWN_S
                continue
            except TimedOut as exc:
                raise ModelUnavailable(f"{url} timed out after {timeout:g}s") from exc
            except Broken as exc:
                # The connection broke mid-request (server restart, reset): worth a retry.
                last = f"connection to {target} failed: {exc}"
                failed.add(target)
                continue
            finally:
                replica.in_flight -= 1
            if response.status_code in retry_status:
                last = f"{url} answered {response.status_code}: {answer_detail(response)}"
                failed.add(target)
                continue
            if response.status_code == 404 and model and several and base is None:
                # Our picture of this replica was stale; another one may serve the model.
                replica.models.discard(model)
                others = [r for r in self._replicas.values() if r.url not in tried]
                if any(model in r.models for r in others):
                    last = f"{url} answered 404: {answer_detail(response)}"
                    failed.add(target)
                    continue
            if response.status_code >= 400:
                refused = _Refused(url, response.status_code, answer_detail(response), body)
                if raw_refusals and response.status_code not in (401, 403):
                    raise refused
                raise refused.translated()
            replica.down_until = 0.0
            if model:
                replica.models.add(str(model))  # it answered for the model, so it has it now
            if "json" not in response.content_type:
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
        # No URL here: this reason reaches the task's caller, and the address is internal.
        return UserError(f"the model server refused the request ({self.status}): {self.detail}")
