"""LoRA training step time, two arms on the same model, LoRA and batches.

Both arms run in the same process, alternating step by step, so the machine's load falls on
both alike. ``--compare logits`` (the default): the baseline is the model's own loss (every
position through the output head, as transformers computes it), the candidate
:func:`swarm.distill.training.completion_loss`. ``--compare precision``: both use
``completion_loss``; the baseline computes in fp32, the candidate under bf16 autocast, as
training does where the CPU multiplies bf16 natively. It also reports how far the losses differ.

Usage: python bench/training.py --base gemma3-270m --specialist sql --labelled FILE [--steps 6]
       [--compare logits|precision]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

from specialists.distillation import find_specialist
from swarm.distill.dataset import read_examples
from swarm.distill.training import completion_loss, encode
from swarm.serving.basemodel import BASES, prepare_base
from swarm.settings import DEFAULT_BASE_MODEL, Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEFAULT_BASE_MODEL, choices=sorted(BASES))
    parser.add_argument("--specialist", default="entities")
    parser.add_argument("--labelled", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=6, help="steps per arm")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--compare", choices=("logits", "precision"), default="logits")
    args = parser.parse_args()

    settings = Settings(base_model=args.base)
    model_dir = prepare_base(settings, BASES[args.base])
    manifest = find_specialist(args.specialist, settings).manifest
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    rows = [encode(tokenizer, manifest, e, args.max_length) for e in read_examples(args.labelled)]
    kept = [r for r in rows if r is not None]
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    batches = [
        collate(kept[i : i + args.batch_size])
        for i in range(0, args.steps * args.batch_size, args.batch_size)
    ]
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    model.train()

    def full(batch: dict) -> torch.Tensor:
        return model(**batch).loss

    def completion(batch: dict) -> torch.Tensor:
        return completion_loss(model, dict(batch))[0]

    def completion_bf16(batch: dict) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return completion_loss(model, dict(batch))[0]

    if args.compare == "logits":
        arms = {"every_position": full, "completion_only": completion}
    else:
        arms = {"fp32": completion, "bf16_autocast": completion_bf16}
    baseline, candidate = arms
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    losses: dict[str, list[float]] = {name: [] for name in arms}
    completion(batches[0]).backward()  # warm-up, not timed
    model.zero_grad()
    for batch in batches:
        for name, step in arms.items():
            started = time.perf_counter()
            loss = step(batch)
            loss.backward()
            seconds[name].append(time.perf_counter() - started)
            losses[name].append(loss.item())
            model.zero_grad()
        print(
            f"batch of {batch['input_ids'].shape[0]}x{batch['input_ids'].shape[1]} tokens: "
            + ", ".join(f"{n} {seconds[n][-1]:.2f} s" for n in arms),
            flush=True,
        )
    p50 = {name: statistics.median(s) for name, s in seconds.items()}
    result = {
        "bench": "training",
        "compare": args.compare,
        "base": args.base,
        "specialist": args.specialist,
        "batch_size": args.batch_size,
        "steps_per_arm": len(batches),
        **{f"step_s_p50_{name}": round(p50[name], 2) for name in arms},
        "speedup": round(p50[baseline] / p50[candidate], 2),
        "max_loss_difference": round(
            max(abs(a - b) for a, b in zip(*losses.values(), strict=True)), 6
        ),
        "max_relative_loss_difference": round(
            max(abs(a - b) / abs(a) for a, b in zip(*losses.values(), strict=True)), 6
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
