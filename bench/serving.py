"""Serving: the base model alone against a mix of 3 LoRA specialists, on one vLLM server.

Same server, same concurrency, same request count and output length (``ignore_eos``) in the
same run. Reports completion tokens/s and p50/p99 request latency for each phase, and the
server's memory (RSS of the vLLM process tree) with the base alone and with 3 adapters loaded,
against 3 merged models (3 servers of the base's size).

On a CPU, the same two phases run again on a second server with vLLM's own LoRA ops instead of
swarm's grouped ones (``SWARM_GROUPED_CPU_LORA``, see ``swarm/serving/cpulora.py``): the
baseline for what the grouped ops gain.

Usage: python bench/serving.py [--requests 24] [--concurrency 4] [--max-tokens 32]
                               [--prompt-words 0]
Needs the default model (`swarm model prepare`) and vllm; takes a few minutes on 2 cores.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

# The repository first: tests/ holds folders named like its packages (tests/specialists/...),
# which would otherwise be imported as namespace packages in their place.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swarm.serving.basemodel import prepare_default_model, served_base_name
from swarm.serving.modelserver import ModelServer, detect_device
from swarm.settings import Settings

from adapterfactory import make_lora

ADAPTERS = ("alpha", "beta", "gamma")
PROMPT = "Write a short note about the weather in Paris."


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        proc = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(proc)
        rss[proc] = int(fields[21]) * 4096
    total, todo = 0, [pid]
    while todo:
        proc = todo.pop()
        total += rss.get(proc, 0)
        todo.extend(children.get(proc, []))
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def phase(
    url: str, models: list[str], requests: int, concurrency: int, max_tokens: int,
    prompt: str = PROMPT,
) -> dict[str, Any]:  # fmt: skip
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    tokens = 0

    async def one(i: int, client: httpx.AsyncClient) -> None:
        nonlocal tokens
        body = {
            "model": models[i % len(models)],
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "ignore_eos": True,
        }
        async with semaphore:
            started = time.perf_counter()
            response = await client.post(f"{url}/v1/chat/completions", json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)
            tokens += int(response.json()["usage"]["completion_tokens"])

    async with httpx.AsyncClient(timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(i, client) for i in range(requests)))
        elapsed = time.perf_counter() - started
    return {
        "requests": requests,
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / elapsed, 2),
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
    }


async def measure(settings: Settings, adapters: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One server: the base alone, then the 3-adapter mix, and its memory after each."""
    base = served_base_name(settings)
    print(f"starting vLLM on port {settings.vllm_port} (grouped CPU LoRA: "
          f"{settings.grouped_cpu_lora})")  # fmt: skip
    with ModelServer(settings) as server:
        assert server.process is not None
        padding = " ".join(["weather"] * args.prompt_words)
        prompt = f"{PROMPT} Context: {padding}" if padding else PROMPT
        run = (args.requests, args.concurrency, args.max_tokens, prompt)
        await phase(server.url, [base], 4, args.concurrency, 8)  # warm-up
        rss_base = tree_rss_bytes(server.process.pid)
        base_only = await phase(server.url, [base], *run)
        print(f"base only: {base_only}")
        async with httpx.AsyncClient(timeout=120) as client:
            for name in ADAPTERS:
                response = await client.post(
                    f"{server.url}/v1/load_lora_adapter",
                    json={"lora_name": name, "lora_path": str(adapters / name)},
                )
                response.raise_for_status()
        await phase(server.url, list(ADAPTERS), 3, args.concurrency, 8)  # warm-up
        mixed = await phase(server.url, list(ADAPTERS), *run)
        print(f"3-adapter mix: {mixed}")
        rss_mixed = tree_rss_bytes(server.process.pid)
    return {"base_only": base_only, "mixed": mixed, "rss_base": rss_base, "rss_mixed": rss_mixed}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--prompt-words",
        type=int,
        default=0,
        help="Pad the prompt with this many words, for a prefill-heavy load.",
    )
    parser.add_argument("--port", type=int, default=8391)
    args = parser.parse_args()

    base_settings = Settings()
    model_dir = prepare_default_model(base_settings, progress=print)
    with tempfile.TemporaryDirectory() as tmp:
        adapters = Path(tmp)
        settings = Settings(
            adapters_dir=adapters,
            vllm_port=args.port,
            max_loras=len(ADAPTERS),
            max_lora_rank=16,
            vllm_startup_timeout_s=600,
        )
        for seed, name in enumerate(ADAPTERS):
            make_lora(
                adapters / name, str(model_dir), base_name=served_base_name(settings), rank=8,
                seed=seed,
            )  # fmt: skip
        weights = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
        adapter_bytes = sum(
            (adapters / name / "adapter_model.safetensors").stat().st_size for name in ADAPTERS
        )
        served = await measure(settings, adapters, args)
        # The baseline for the grouped ops: vLLM's own LoRA ops, on a server of its own.
        vllm_ops = None
        device = detect_device(settings)
        grouped = device == "cpu" and settings.grouped_cpu_lora
        if grouped:
            plain = settings.model_copy(update={"grouped_cpu_lora": False})
            vllm_ops = await measure(plain, adapters, args)

    base_only, mixed = served["base_only"], served["mixed"]
    rss_base, rss_mixed = served["rss_base"], served["rss_mixed"]
    ratio = mixed["tokens_per_s"] / base_only["tokens_per_s"]
    memory_ratio = rss_mixed / rss_base
    figures: dict[str, Any] = {
        "bench": "serving",
        "device": device,
        "grouped_cpu_lora": grouped,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
        "prompt_words": args.prompt_words,
        "base_only": base_only,
        "mixed_3_adapters": mixed,
        "throughput_ratio_mixed_to_base": round(ratio, 3),
    }
    if vllm_ops is not None:
        plain_ratio = vllm_ops["mixed"]["tokens_per_s"] / vllm_ops["base_only"]["tokens_per_s"]
        figures["vllm_lora_ops"] = {
            "base_only": vllm_ops["base_only"],
            "mixed_3_adapters": vllm_ops["mixed"],
            "throughput_ratio_mixed_to_base": round(plain_ratio, 3),
        }
        figures["mixed_speedup_grouped_over_vllm_ops"] = round(
            mixed["tokens_per_s"] / vllm_ops["mixed"]["tokens_per_s"], 2
        )
    figures["memory"] = {
        "base_weights_bytes": weights,
        "three_adapters_bytes": adapter_bytes,
        "server_rss_base_bytes": rss_base,
        "server_rss_base_plus_3_adapters_bytes": rss_mixed,
        "ratio_3_specialists_to_base": round(memory_ratio, 3),
        "three_merged_models_rss_estimate_bytes": 3 * rss_base,
        "ratio_3_merged_to_base": 3.0,
        "weights_base_plus_3_adapters_bytes": weights + adapter_bytes,
        "weights_3_merged_models_bytes": 3 * weights,
        "weights_ratio_3_specialists_to_base": round((weights + adapter_bytes) / weights, 3),
    }
    figures["target_throughput_ratio_ge_0_85"] = ratio >= 0.85
    figures["target_memory_ratio_le_1_1"] = memory_ratio <= 1.1
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
