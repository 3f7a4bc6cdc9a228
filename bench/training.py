"""LoRA training step time: logits at completion positions only, against logits everywhere.

Both arms run the same model, LoRA and batches in the same process, alternating step by step,
so the machine's load falls on both alike. The baseline is the model's own loss (every position
through the output head, as transformers computes it); the candidate is
:func:`swarm.distill.training.completion_loss`. It also checks that both give the same loss.

Usage: python bench/training.py --base gemma3-270m --specialist sql --labelled FILE [--steps 6]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

from specialists.distillation import find_specialist
from swarm.distill.dataset import read_examples
from swarm.distill.training import completion_loss, encode
from swarm.serving.basemodel import BASES, prepare_base
from swarm.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--specialist", default="entities")
    parser.add_argument("--labelled", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=6, help="steps per arm")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
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
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    model.train()

    def full(batch: dict) -> torch.Tensor:
        return model(**batch).loss

    def completion(batch: dict) -> torch.Tensor:
        return completion_loss(model, dict(batch))[0]

    arms = {"every_position": full, "completion_only": completion}
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
        "base": args.base,
        "specialist": args.specialist,
        "batch_size": args.batch_size,
        "steps_per_arm": len(batches),
        "step_s_p50_every_position": round(p50["every_position"], 2),
        "step_s_p50_completion_only": round(p50["completion_only"], 2),
        "speedup": round(p50["every_position"] / p50["completion_only"], 2),
        "max_loss_difference": round(
            max(abs(a - b) for a, b in zip(*losses.values(), strict=True)), 6
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
