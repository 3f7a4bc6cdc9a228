"""The runtime's own cost: API + orchestrator + worker + Redis, around an instant model.

The model backend is a minimal OpenAI-compatible server that answers at once with valid output
(it isolates the runtime; it is not a model). The API, an orchestrator, a worker and the
registry run as separate `swarm` processes, as in production. The baseline, measured in the same
run, is a direct call to that instant model: what one model call costs without the runtime.

Two phases on the same stack:

* throughput: ``--tasks`` 3-step tasks submitted by ``--concurrency`` HTTP clients as fast as
  the API takes them; tasks/s from the first POST to the last task's end, and the CPU time each
  process (api, orchestrator, worker, registry, and Redis when it runs on this machine) spent
  per task. CPU per task does not depend on what else the machine runs, so it also gives the
  cores needed for 400 tasks/s;
* latency: ``--latency-tasks`` tasks, one at a time (``--latency-concurrency``), and the
  runtime's added latency per handoff at p50 and p99: (task end-to-end time - the three steps'
  worker time) / 3, from the task record's timestamps.

With --vllm, also runs a few tasks on a real vLLM server and reports the share of end-to-end
time spent outside model calls.

Usage: python bench/overhead.py [--tasks 1000] [--concurrency 32] [--latency-tasks 200] [--vllm]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvicorn
from fastapi import FastAPI, Request
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from specialists.builtin import BUILTINS  # noqa: E402
from swarm import names  # noqa: E402
from swarm.serving.modelclient import requested_schema  # noqa: E402

TEXT = "Maria Lopez of Acme Corp emailed maria@example.com from Berlin."
OUTPUTS: dict[str, dict[str, Any]] = {
    "pii": {"redacted_text": "[PERSON] of Acme Corp emailed [EMAIL] from Berlin.", "spans": []},
    "entities": {"entities": [{"text": "Acme Corp", "type": "ORGANIZATION"}]},
    "sql": {"sql": "SELECT COUNT(*) FROM customers"},
}
PROMPTS = {s.manifest.system_prompt: name for name, s in BUILTINS.items()}
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
        schema = requested_schema(body) or {}
        fields = set(schema.get("properties") or {})
        # Known by its output schema (prompts change as specialists are distilled).
        name = next(
            (n for n, out in OUTPUTS.items() if fields and set(out) <= fields),
            PROMPTS.get(body["messages"][0]["content"], "sql"),
        )
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
def serve_instant_model(port: int, logs: Path) -> Any:
    """The instant model in a process of its own, so its CPU is not the load generator's."""
    log = open(logs / "instant-model.log", "wb")  # noqa: SIM115
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-instant-model", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if child.poll() is not None:
                raise RuntimeError(f"the instant model exited; see {logs}/instant-model.log")
            time.sleep(0.05)
        yield url, child.pid
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def runtime(
    env: dict[str, str], api_port: int, logs: Path, *, api_key: str | None = None, ready: int = 3
) -> Any:
    """The swarm processes: registry, orchestrator, worker, api; up once ``ready``
    specialists are (asked with ``api_key``, where the API has keys)."""
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
                headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
                answer = httpx.get(f"{url}/v1/specialists", headers=headers, timeout=1)
                specialists = answer.json() if answer.status_code == 200 else []
                if len([s for s in specialists if s["status"] == "ready"]) >= ready:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"the stack did not come up; see {logs}")
        roles = ("registry", "orchestrator", "worker", "api")
        yield url, {role: child.pid for role, child in zip(roles, children, strict=True)}
    finally:
        for child in reversed(children):
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


TERMINAL = ("completed", "failed", "canceled", "rejected")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux); 0 if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def summarize(redis: Redis, ids: list[str]) -> dict[str, Any]:
    """Outcomes and the added latency per handoff, from the tasks' records."""
    async with redis.pipeline(transaction=False) as pipe:
        for t in ids:
            pipe.hget(names.task_key(t), "doc")
        docs = await pipe.execute()
    tasks = [json.loads(d) for d in docs if d]
    handoff_ms = []
    end_to_end_ms = []
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
        end_to_end_ms.append(total)
        outside_share.append((total - model) / total)

    def stat(values: list[float], q: float | None = None) -> float | None:
        if not values:
            return None
        return round(statistics.median(values) if q is None else percentile(values, q), 3)

    return {
        "tasks": len(ids),
        "completed": sum(t["state"] == "completed" for t in tasks),
        # Why tasks that ended otherwise did (a real model's invalid output, say), a few of them.
        "failure_reasons": sorted({t["reason"] for t in tasks if t["state"] == "failed"})[:5],
        "lost": len(ids) - sum(t["state"] in TERMINAL for t in tasks),
        "end_to_end_ms_p50": stat(end_to_end_ms),
        "added_ms_per_handoff_p50": stat(handoff_ms),
        "added_ms_per_handoff_p99": stat(handoff_ms, 0.99),
        "share_outside_model_calls": round(statistics.median(outside_share), 4)
        if outside_share
        else None,
    }


async def ended_count(redis: Redis) -> int:
    counts = await redis.hmget(names.TASK_STATES_KEY, list(TERMINAL))
    return sum(int(c or 0) for c in counts)


async def throughput(
    url: str,
    redis_url: str,
    count: int,
    concurrency: int,
    pids: dict[str, int],
    harness: dict[str, int],
) -> dict[str, Any]:
    """Submit ``count`` 3-step tasks with bounded concurrency; wait until all have ended."""
    redis = Redis.from_url(redis_url)
    ended_before = await ended_count(redis)
    semaphore = asyncio.Semaphore(concurrency)
    ids: list[str] = []
    cpu_before = {role: cpu_s(pid) for role, pid in pids.items()}
    harness_before = {role: cpu_s(pid) for role, pid in harness.items()}
    # aiohttp, not httpx: under concurrency httpx's pool costs milliseconds of CPU per request,
    # which this load generator would take from the runtime's two cores.
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as client:

        async def one() -> None:
            async with semaphore, client.post("/v1/tasks", json=TASK) as response:
                body = await response.json()
                if response.status != 202:
                    raise SystemExit(f"POST /v1/tasks answered {response.status}: {body}")
                ids.append(body["id"])

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
    # The fleet-wide counters of tasks entering each state: one small read per poll.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if await ended_count(redis) - ended_before >= count:
            break
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    cpu = {role: cpu_s(pid) - cpu_before[role] for role, pid in pids.items()}
    harness_cpu = {role: cpu_s(pid) - harness_before[role] for role, pid in harness.items()}
    figures = await summarize(redis, ids)
    await redis.aclose()
    figures["seconds"] = round(elapsed, 3)
    figures["tasks_per_s"] = round(figures["completed"] / elapsed, 1)
    figures["cpu_ms_per_task"] = {role: round(1000 * c / count, 3) for role, c in cpu.items()}
    total = sum(cpu.values()) / count
    figures["cpu_ms_per_task"]["total"] = round(1000 * total, 3)
    figures["cores_for_400_tasks_per_s"] = round(400 * total, 2)
    # What two cores given to the runtime alone would sustain. The measured tasks/s above is
    # lower on a 2-core machine: the load generator and the instant model share its cores.
    figures["tasks_per_s_on_2_runtime_cores"] = round(2 / total, 1) if total else None
    figures["runtime_cores_busy"] = round(sum(cpu.values()) / elapsed, 2)
    figures["harness_cpu_ms_per_task"] = {
        role: round(1000 * c / count, 3) for role, c in harness_cpu.items()
    }
    # The handoff figures here include queueing behind the whole burst.
    figures["added_ms_per_handoff_p50_under_burst"] = figures.pop("added_ms_per_handoff_p50")
    figures["added_ms_per_handoff_p99_under_burst"] = figures.pop("added_ms_per_handoff_p99")
    return figures


def accepted(response: httpx.Response) -> None:
    """Stop the run with the API's own explanation if it refused a task."""
    if response.status_code != 202:
        raise SystemExit(f"POST /v1/tasks answered {response.status_code}: {response.text}")


async def latency(url: str, redis_url: str, count: int, concurrency: int) -> dict[str, Any]:
    """Run ``count`` tasks, ``concurrency`` at a time, each waited for before the next."""
    redis = Redis.from_url(redis_url)
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def loop(n: int) -> None:
            for _ in range(n):
                response = await client.post("/v1/tasks", json=TASK)
                accepted(response)
                task_id = response.json()["id"]
                ids.append(task_id)
                deadline = time.monotonic() + 60
                # Pacing only: the figures come from the record's own timestamps.
                while time.monotonic() < deadline:
                    state = await redis.hget(names.task_key(task_id), "state")
                    if state is not None and _text(state) in TERMINAL:
                        break
                    await asyncio.sleep(0.002)

        await asyncio.gather(*(loop(count // concurrency) for _ in range(concurrency)))
    figures = await summarize(redis, ids)
    await redis.aclose()
    figures["concurrency"] = concurrency
    return figures


async def direct_model_ms(url: str, calls: int = 200) -> float:
    """Baseline: one chat call to the instant model, straight over HTTP, p50 in ms."""
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": BUILTINS["sql"].manifest.system_prompt}],
    }
    samples = []
    # aiohttp, as the worker's model client uses.
    async with aiohttp.ClientSession() as client:
        for _ in range(calls):
            started = time.perf_counter()
            async with client.post(f"{url}/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                await response.read()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks in the throughput burst")
    parser.add_argument("--concurrency", type=int, default=32, help="HTTP clients in the burst")
    parser.add_argument("--latency-tasks", type=int, default=200)
    parser.add_argument("--latency-concurrency", type=int, default=1)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--vllm", action="store_true", help="also measure on a real vLLM")
    parser.add_argument("--serve-instant-model", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_instant_model:
        config = uvicorn.Config(
            instant_model(), host="127.0.0.1", port=args.serve_instant_model, log_level="error"
        )
        await uvicorn.Server(config).serve()
        return
    redis = Redis.from_url(args.redis_url)
    await redis.flushdb()
    redis_pid = int((await redis.info("server"))["process_id"])
    figures: dict[str, Any] = {"bench": "overhead", "cpu_count": os.cpu_count()}
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_instant_model(free_port(), Path(tmp)) as (
            model_url,
            model_pid,
        ),
    ):
        api_port = free_port()
        # Manifests only: the instant model cannot load LoRA weights, and prompt-only
        # specialists cost the runtime exactly as much as adapters do.
        adapters = Path(tmp) / "adapters"
        for name in BUILTINS:
            (adapters / name).mkdir(parents=True)
            shutil.copy(ROOT / "adapters" / name / "specialist.yaml", adapters / name)
        env = {
            **os.environ,
            "SWARM_REDIS_URL": args.redis_url,
            "SWARM_VLLM_URLS": model_url,
            "SWARM_ADAPTERS_DIR": str(adapters),
            "SWARM_API_PORT": str(api_port),
            "SWARM_LOG_LEVEL": "WARNING",
        }
        baseline = await direct_model_ms(model_url)
        with runtime(env, api_port, Path(tmp)) as (url, pids):
            if cpu_s(redis_pid) > 0:  # Redis runs on this machine
                pids["redis"] = redis_pid
            await latency(url, args.redis_url, 20, 4)  # warm-up
            harness = {"load_generator": os.getpid(), "instant_model": model_pid}
            burst = await throughput(
                url, args.redis_url, args.tasks, args.concurrency, pids, harness
            )
            quiet = await latency(url, args.redis_url, args.latency_tasks, args.latency_concurrency)
        figures["throughput"] = burst
        figures["latency"] = quiet
        figures["baseline_direct_model_call_p50_ms"] = round(baseline, 3)
        p50 = quiet["added_ms_per_handoff_p50"]
        figures["handoff_overhead_to_model_call_ratio_p50"] = (
            round(p50 / baseline, 2) if p50 else None
        )
    if args.vllm:
        figures["real_vllm"] = await run_on_vllm(args.redis_url)
    await redis.flushdb()
    await redis.aclose()
    figures["target_tasks_per_s_ge_400_on_2_runtime_cores"] = (
        burst["tasks_per_s_on_2_runtime_cores"] or 0
    ) >= 400
    figures["target_handoff_p50_le_3ms"] = p50 is not None and p50 <= 3
    if "real_vllm" in figures:
        share = figures["real_vllm"]["share_outside_model_calls"]
        figures["target_outside_share_le_3pct"] = share is not None and share <= 0.03
    print(json.dumps(figures))


async def run_on_vllm(redis_url: str) -> dict[str, Any]:
    """A few tasks on the real default model (schema-checked copies, so they complete)."""
    from swarm.serving.modelserver import ModelServer
    from swarm.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        adapters = Path(tmp) / "adapters"
        adapters.mkdir()
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
            with runtime(env, api_port, Path(tmp)) as (url, _pids):
                return await latency(url, redis_url, 6, 1)


if __name__ == "__main__":
    asyncio.run(main())
