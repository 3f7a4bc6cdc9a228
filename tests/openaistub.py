"""A minimal OpenAI-compatible server for tests, reached over real HTTP.

It stands in only for what we do not own (a frontier teacher, or a misbehaving model server):
each test scripts the replies it wants, and can see every request it was sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

Reply = Callable[[dict[str, Any]], tuple[int, Any]]


def completion(content: str, *, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


class Stub:
    def __init__(
        self,
        replies: list[Reply] | Reply,
        models: list[str] | None = None,
        *,
        listed_only: bool = False,
    ) -> None:
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        self.models = list(models or ["base"])
        """What GET /v1/models lists; load_lora_adapter adds to it, unload removes from it."""
        self.listed_only = listed_only
        """Answer chat calls for a model not in :attr:`models` with vLLM's 404."""
        self.adapter_calls: list[tuple[str, dict[str, Any]]] = []
        """Every load/unload request, as (path, body)."""
        self.url = ""

    def next_reply(self, body: dict[str, Any]) -> tuple[int, Any]:
        self.requests.append(body)
        if callable(self.replies):
            return self.replies(body)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return reply(body)


@contextmanager
def openai_stub(
    replies: list[Reply] | Reply,
    port: int,
    *,
    models: list[str] | None = None,
    listed_only: bool = False,
) -> Iterator[Stub]:
    stub = Stub(replies, models, listed_only=listed_only)
    app = FastAPI()

    @app.get("/v1/models")
    async def list_models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": m} for m in stub.models]})

    # Load and unload answer as vLLM 0.32 does, errors included.
    @app.post("/v1/load_lora_adapter")
    async def load(request: Request) -> JSONResponse:
        body = await request.json()
        stub.adapter_calls.append(("/v1/load_lora_adapter", body))
        name = str(body["lora_name"])
        if name in stub.models:
            message = f"The lora adapter '{name}' has already been loaded."
            return JSONResponse({"error": {"message": message, "code": 400}}, status_code=400)
        stub.models.append(name)
        return JSONResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload(request: Request) -> JSONResponse:
        body = await request.json()
        stub.adapter_calls.append(("/v1/unload_lora_adapter", body))
        name = str(body["lora_name"])
        if name not in stub.models:
            message = f"The lora adapter '{name}' cannot be found."
            return JSONResponse({"error": {"message": message, "code": 404}}, status_code=404)
        stub.models.remove(name)
        return JSONResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        sent = await request.json()
        if stub.listed_only and sent.get("model") not in stub.models:
            stub.requests.append(sent)
            message = f"The model `{sent.get('model')}` does not exist."
            return JSONResponse({"error": {"message": message, "code": 404}}, status_code=404)
        status, body = stub.next_reply(sent)
        return JSONResponse(body, status_code=status)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({})

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    stub.url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        server.should_exit = True
        thread.join(timeout=10)
