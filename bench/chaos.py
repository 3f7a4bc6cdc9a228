"""Chaos: the real roles under load while roles and Redis itself are SIGKILLed.

Starts a Redis of its own with AOF (``appendfsync everysec``, as compose runs it), the bench's
instant model (``bench/overhead.py``: an OpenAI-compatible server that answers at once; it
isolates the runtime), and the real roles as ``swarm`` processes: two orchestrators, two
workers, the API and the registry. It submits ``--tasks`` three-step tasks over HTTP (each with
an Idempotency-Key, re-sent until the API accepts it) while a chaos loop SIGKILLs a random role
or Redis every ``--every`` seconds and starts again only what it killed. Then it waits until
every accepted task is terminal.

The baseline, measured in the same run, is the same tasks on the same stack with no kills: the
time to terminal it gives is what the kills cost.

Reported: accepted, completed, failed, lost (accepted but not terminal a minute after the last
kill, or missing), duplicate completions (a task that logged more than one terminal state),
the roles that exited on their own (not killed by the bench), and the kills.

Target: 0 lost, 0 duplicates, 0 roles exiting on their own, and every accepted task terminal
within a minute of the last kill.

Tasks are spread over the chaos window (``--kills`` x ``--every`` seconds), in both runs.

Usage: python bench/chaos.py [--tasks 300] [--kills 20] [--redis-kills 4] [--every 1.5]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from overhead import TASK, free_port, serve_instant_model  # noqa: E402

from specialists.builtin import BUILTINS  # noqa: E402
from swarm.tasks import TERMINAL_STATES, TaskNotFound, TaskStore  # noqa: E402

ROLES = ("registry", "api", "orchestrator-1", "orchestrator-2", "worker-1", "worker-2")
SETTLE_S = 60.0
"""How long after the last kill every accepted task must be terminal."""


class Process:
    """One child the bench starts, kills with SIGKILL and starts again."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.argv, self.env, self.logs = name, argv, env, logs
        self.child: subprocess.Popen[bytes] | None = None
        self.exited_on_own: list[int] = []
        self.killed = False  # down on purpose, until started again

    def start(self) -> None:
        self.killed = False
        with open(self.logs / f"{self.name}.log", "ab") as log:
            self.child = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        self.killed = True
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait()

    def check(self) -> None:
        """A child that died without being killed is counted, then started again."""
        if not self.killed and self.child is not None and self.child.poll() is not None:
            self.exited_on_own.append(self.child.returncode)
            self.start()

    def stop(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.child.kill()


def redis_process(port: int, workdir: Path, env: dict[str, str], logs: Path) -> Process:
    server = shutil.which("redis-server") or "redis-server"
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]  # fmt: skip
    return Process("redis", argv, env, logs)


def role_process(name: str, env: dict[str, str], logs: Path) -> Process:
    swarm = str(Path(sys.executable).with_name("swarm"))
    return Process(name, [swarm, name.split("-")[0]], env, logs)


async def wait_ready(url: str, redis_url: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                specialists = (await http.get(f"{url}/v1/specialists")).json()
                if len([s for s in specialists if s["status"] == "ready"]) >= len(BUILTINS):
                    return
            except (httpx.HTTPError, ValueError, TypeError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the stack at {url} (Redis {redis_url}) did not come up")


async def submit_all(url: str, count: int, concurrency: int, tag: str, over_s: float) -> list[str]:
    """Submit ``count`` tasks spread evenly over ``over_s`` seconds (the chaos runs meanwhile);
    each is re-sent with its Idempotency-Key until accepted."""
    accepted: list[str] = []
    started = time.monotonic()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def client() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while not queue.empty():
                n = queue.get_nowait()
                await asyncio.sleep(max(0.0, started + n * over_s / count - time.monotonic()))
                headers = {"Idempotency-Key": f"{tag}-{n}"}
                for _ in range(600):  # 600 x 0.2 s: two minutes of outages at most
                    try:
                        response = await http.post(f"{url}/v1/tasks", json=TASK, headers=headers)
                        if response.status_code in (200, 202):
                            accepted.append(str(response.json()["id"]))
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.2)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return accepted


async def chaos(processes: dict[str, Process], kills: int, redis_kills: int, every_s: float,
                stop: asyncio.Event) -> list[str]:  # fmt: skip
    """SIGKILL ``kills`` random processes (``redis_kills`` of them Redis), each started again
    after a short pause; returns what was killed, in order."""
    rng = random.Random(7)
    targets = ["redis"] * redis_kills + [rng.choice(ROLES) for _ in range(kills - redis_kills)]
    rng.shuffle(targets)
    done = []
    for name in targets:
        if stop.is_set():
            break
        await asyncio.sleep(every_s * rng.uniform(0.5, 1.5))
        process = processes[name]
        process.kill()
        await asyncio.sleep(rng.uniform(0.2, 1.0) if name != "redis" else rng.uniform(1.0, 3.0))
        process.start()
        done.append(name)
    return done


async def outcome(redis: Redis, ids: list[str], settle_s: float) -> dict[str, Any]:
    """Wait up to ``settle_s`` for every task to end; count states and duplicate endings."""
    store = TaskStore(redis)
    started = time.monotonic()
    states: dict[str, str] = {}
    while time.monotonic() - started < settle_s:
        states = {}
        for task_id in ids:
            try:
                states[task_id] = (await store.get(task_id)).state
            except TaskNotFound:
                states[task_id] = "missing"
            except Exception:
                states[task_id] = "unreadable"
        if all(state in TERMINAL_STATES for state in states.values()):
            break
        await asyncio.sleep(1.0)
    waited = time.monotonic() - started
    duplicates = 0
    for task_id in ids:
        endings = [
            event for _id, event in await store.events(task_id)
            if event.kind == "state" and event.state in TERMINAL_STATES
        ]  # fmt: skip
        duplicates += len(endings) > 1
    return {
        "accepted": len(ids),
        "completed": sum(s == "completed" for s in states.values()),
        "failed": sum(s in ("failed", "rejected", "canceled") for s in states.values()),
        "lost": sum(s not in TERMINAL_STATES for s in states.values()),
        "duplicate_completions": duplicates,
        "seconds_to_all_terminal": round(waited, 1),
    }


async def run(args: argparse.Namespace, tmp: Path, model_url: str, kills: int) -> dict[str, Any]:
    """One run on a fresh stack: ``kills`` = 0 is the baseline."""
    logs = tmp / ("logs-chaos" if kills else "logs-baseline")
    logs.mkdir()
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    adapters = tmp / "adapters"
    api_port = free_port()
    env = {
        **os.environ,
        "SWARM_REDIS_URL": redis_url,
        "SWARM_VLLM_URLS": model_url,
        "SWARM_ADAPTERS_DIR": str(adapters),
        "SWARM_API_PORT": str(api_port),
        "SWARM_LOG_LEVEL": "WARNING",
        "SWARM_HEARTBEAT_TIMEOUT_S": "3",
        "SWARM_API_TASKS_PER_MINUTE": "0",
    }
    workdir = tmp / f"redis-{port}"
    workdir.mkdir()
    processes = {"redis": redis_process(port, workdir, env, logs)}
    processes["redis"].start()
    redis = Redis.from_url(redis_url)
    for _ in range(100):
        try:
            await redis.ping()
            break
        except Exception:
            await asyncio.sleep(0.05)
    for name in ROLES:
        processes[name] = role_process(name, env, logs)
        processes[name].start()
    url = f"http://127.0.0.1:{api_port}"
    try:
        await wait_ready(url, redis_url)
        stop = asyncio.Event()
        watching = True

        async def watch() -> None:
            while watching:
                for name in ROLES:
                    processes[name].check()
                await asyncio.sleep(0.2)

        watcher = asyncio.create_task(watch())
        chaos_task = asyncio.create_task(
            chaos(processes, kills, min(args.redis_kills, kills), args.every, stop)
        )
        started = time.monotonic()
        ids = await submit_all(
            url, args.tasks, args.concurrency, tag=f"k{kills}", over_s=args.kills * args.every
        )
        killed = await chaos_task
        last_kill = time.monotonic()
        figures = await outcome(redis, ids, SETTLE_S)
        watching = False
        await watcher
        figures["kills"] = len(killed)
        figures["redis_kills"] = killed.count("redis")
        figures["roles_exited_on_their_own"] = {
            name: processes[name].exited_on_own for name in ROLES if processes[name].exited_on_own
        }
        figures["seconds_submit_to_all_terminal"] = round(time.monotonic() - started, 1)
        figures["seconds_last_kill_to_all_terminal"] = round(time.monotonic() - last_kill, 1)
        return figures
    finally:
        await redis.aclose()
        for process in reversed(processes.values()):
            process.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--redis-kills", type=int, default=4)
    parser.add_argument("--every", type=float, default=1.5, help="seconds between kills")
    parser.add_argument("--logs", type=Path, help="keep the roles' logs here (default: deleted)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=args.logs))
        adapters = tmp / "adapters"
        for name in BUILTINS:  # manifests only: the instant model serves no LoRA
            (adapters / name).mkdir(parents=True)
            shutil.copy(ROOT / "adapters" / name / "specialist.yaml", adapters / name)
        with serve_instant_model(free_port(), tmp) as (model_url, _pid):
            baseline = await run(args, tmp, model_url, kills=0)
            under_chaos = await run(args, tmp, model_url, kills=args.kills)
    figures = {
        "bench": "chaos",
        "tasks": args.tasks,
        "baseline_no_kills": baseline,
        "chaos": under_chaos,
        "target_met": (
            under_chaos["lost"] == 0
            and under_chaos["duplicate_completions"] == 0
            and not under_chaos["roles_exited_on_their_own"]
            and under_chaos["seconds_last_kill_to_all_terminal"] <= SETTLE_S
        ),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
