"""The runtime's own cost: API + orchestrator + worker + Redis, around an instant model.

The model backend is a minimal OpenAI-compatible server that answers at once with valid output
(it isolates the runtime; it is not a model). The API, an orchestrator, a worker and the
registry run as separate `swarm` processes, as in production. The baseline, measured in the same
run, is a direct call to that instant model: what three model calls cost without the runtime.

Reports 3-step tasks/s, and the runtime's added latency per handoff at p50 and p99:
(task end-to-end time - the three steps' model-call time) / 3.
With --vllm, also runs a few tasks on a real vLLM server and reports the share of end-to-end
time spent outside model calls.

Usage: python bench/overhead.py [--tasks 400] [--concurrency 32] [--vllm]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from specialists.builtin import BUILTINS  # noqa: E402

TEXT = "Maria Lopez of Acme Corp emailed maria@example.com from Berlin."
OUTPUTS = {
    "pii": {"redacted_text": "[PERSON] of Acme Corp emailed [EMAIL] from Berlin.", "spans": []},
    "entities": {"entities": [{"text": "Acme Corp", "type": "ORGANIZATION"}]},
    "sql": {"sql": "SELECT COUNT(*) FROM customers"},
}
PROMPTS = {d.system_prompt: name for name, d in BUILTINS.items()}
TASK = {
    "input": {
        "text": TEXT,
        "question": "How many customers?",
        "schema": "CREATE TABLE customers (id INTEGER);",
    },
    "plan": ["pii", "entities", "sql"],
}


def instant_model() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        name = PROMPTS.get(body["messages"][0]["content"], "sql")
        return {
            "choices": [
                {
                    "message": {"role": "assistant", "content": json.dumps(OUTPUTS[name])},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10},
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {}

    return app


@contextmanager
def serve(app: FastAPI, port: int) -> Any:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def runtime(env: dict[str, str], api_port: int, logs: Path) -> Any:
    """The swarm processes: registry, orchestrator, worker, api."""
    swarm = str(Path(sys.executable).with_name("swarm"))
    children = []
    for role in ("registry", "orchestrator", "worker", "api"):
        log = open(logs / f"{role}.log", "wb")  # noqa: SIM115
        children.append(
            subprocess.Popen([swarm, role], env=env, stdout=log, stderr=subprocess.STDOUT)
        )
    url = f"http://127.0.0.1:{api_port}"
    try:
        for _ in range(300):
            try:
                specialists = httpx.get(f"{url}/v1/specialists", timeout=1).json()
                if len([s for s in specialists if s["status"] == "ready"]) >= 3:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"the stack did not come up; see {logs}")
        yield url
    finally:
        for child in reversed(children):
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_tasks(url: str, redis_url: str, count: int, concurrency: int) -> dict[str, Any]:
    """Submit ``count`` 3-step tasks with bounded concurrency; wait until all are done."""
    semaphore = asyncio.Semaphore(concurrency)
    ids: list[str] = []

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one() -> None:
            async with semaphore:
                response = await client.post("/v1/tasks", json=TASK)
                response.raise_for_status()
                ids.append(response.json()["id"])

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        redis = Redis.from_url(redis_url)
        from swarm import names

        pending = set(ids)
        deadline = time.monotonic() + 600
        while pending and time.monotonic() < deadline:
            states = await asyncio.gather(
                *(redis.hget(names.task_key(t), "state") for t in pending)
            )
            pending = {
                t
                for t, s in zip(list(pending), states, strict=True)
                if s not in (b"completed", b"failed", b"canceled", b"rejected")
            }
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        docs = await asyncio.gather(*(redis.hget(names.task_key(t), "doc") for t in ids))
        await redis.aclose()
    tasks = [json.loads(d) for d in docs]
    completed = [t for t in tasks if t["state"] == "completed"]
    handoff_ms = []
    outside_share = []
    for task in tasks:
        ran = [step for step in task["steps"] if step.get("latency_ms")]
        if task["state"] not in ("completed", "failed") or not ran:
            continue
        total = (
            datetime.fromisoformat(task["updated_at"]) - datetime.fromisoformat(task["created_at"])
        ).total_seconds() * 1000
        # A step's latency is the worker's time on it: the model call(s) and their validation.
        model = sum(step["latency_ms"] for step in ran)
        handoff_ms.append((total - model) / len(ran))
        outside_share.append((total - model) / total)
    return {
        "tasks": count,
        "completed": len(completed),
        "lost": len(pending),
        "tasks_per_s": round(len(completed) / elapsed, 1),
        "added_ms_per_handoff_p50": round(statistics.median(handoff_ms), 3) if handoff_ms else None,
        "added_ms_per_handoff_p99": round(percentile(handoff_ms, 0.99), 3) if handoff_ms else None,
        "share_outside_model_calls": round(statistics.median(outside_share), 4)
        if outside_share
        else None,
    }


async def direct_model_ms(url: str, calls: int = 200) -> float:
    """Baseline: one chat call to the instant model, straight over HTTP, p50 in ms."""
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": BUILTINS["sql"].system_prompt}],
    }
    samples = []
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(calls):
            started = time.perf_counter()
            (await client.post(f"{url}/v1/chat/completions", json=body)).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--vllm", action="store_true", help="also measure on a real vLLM")
    args = parser.parse_args()
    redis = Redis.from_url(args.redis_url)
    await redis.flushdb()
    figures: dict[str, Any] = {"bench": "overhead"}
    with tempfile.TemporaryDirectory() as tmp, serve(instant_model(), free_port()) as model_url:
        api_port = free_port()
        env = {
            **os.environ,
            "SWARM_REDIS_URL": args.redis_url,
            "SWARM_VLLM_URLS": model_url,
            "SWARM_ADAPTERS_DIR": str(ROOT / "adapters"),
            "SWARM_API_PORT": str(api_port),
            "SWARM_LOG_LEVEL": "WARNING",
        }
        baseline = await direct_model_ms(model_url)
        with runtime(env, api_port, Path(tmp)) as url:
            await run_tasks(url, args.redis_url, 20, 8)  # warm-up
            instant = await run_tasks(url, args.redis_url, args.tasks, args.concurrency)
        figures["instant_model"] = instant
        figures["baseline_direct_model_call_p50_ms"] = round(baseline, 3)
        figures["handoff_overhead_to_model_call_ratio_p50"] = (
            round(instant["added_ms_per_handoff_p50"] / baseline, 2)
            if instant["added_ms_per_handoff_p50"]
            else None
        )
    if args.vllm:
        figures["real_vllm"] = await run_on_vllm(args.redis_url)
    await redis.flushdb()
    await redis.aclose()
    figures["target_tasks_per_s_ge_400"] = (figures["instant_model"]["tasks_per_s"] or 0) >= 400
    p50 = figures["instant_model"]["added_ms_per_handoff_p50"]
    figures["target_handoff_p50_le_3ms"] = p50 is not None and p50 <= 3
    if "real_vllm" in figures:
        share = figures["real_vllm"]["share_outside_model_calls"]
        figures["target_outside_share_le_3pct"] = share is not None and share <= 0.03
    print(json.dumps(figures))


async def run_on_vllm(redis_url: str) -> dict[str, Any]:
    """A few tasks on the real default model (schema-checked copies, so they complete)."""
    from swarm.modelserver import ModelServer
    from swarm.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        adapters = Path(tmp) / "adapters"
        adapters.mkdir()
        import shutil

        for name in BUILTINS:
            shutil.copytree(ROOT / "adapters" / name, adapters / name)
        port = free_port()
        settings = Settings(adapters_dir=adapters, vllm_port=port, vllm_startup_timeout_s=600)
        with ModelServer(settings) as server:
            api_port = free_port()
            env = {
                **os.environ,
                "SWARM_REDIS_URL": redis_url,
                "SWARM_VLLM_URLS": server.url,
                "SWARM_ADAPTERS_DIR": str(adapters),
                "SWARM_API_PORT": str(api_port),
                "SWARM_LOG_LEVEL": "WARNING",
            }
            with runtime(env, api_port, Path(tmp)) as url:
                return await run_tasks(url, redis_url, 6, 2)


if __name__ == "__main__":
    asyncio.run(main())
