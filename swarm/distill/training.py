"""LoRA training of a specialist with peft and transformers' Trainer.

Design choices, each for a reason:
- The student sees exactly the chat the worker will send it (:func:`render_messages` through
  the base model's chat template), so nothing differs between training and serving.
- Loss is on the completion tokens only (the assistant turn, its end-of-turn token included);
  the prompt is masked with -100. The student learns to answer, not to recite prompts.
- So only the positions that predict a completion token go through the output head
  (:func:`completion_loss`). Gemma 3's head is a 262k-word vocabulary, more arithmetic than the
  rest of its 270M model, and a prompt is most of each sequence: scoring every position cost
  half of each training step for nothing.
- LoRA targets every linear layer ("all-linear": attention and MLP projections; peft leaves the
  output head out), adds no tokens, and keeps rank at most 64, which vLLM serves.
- The Trainer picks the GPU when there is one and runs on the CPU otherwise. It computes in
  bf16 (autocast; the LoRA weights, the optimizer and the loss stay fp32) where the hardware
  multiplies bf16 natively: a GPU that supports it, or a CPU with AVX512-BF16 or AMX, where a
  Gemma 3 step takes about 1.4x less time (bench/training.py --compare precision). Elsewhere,
  CPU bf16 is emulated and slower than fp32, so it trains in fp32. ``precision`` overrides.
- Saved weights are cast to bf16: half the size, the dtype vLLM serves the adapter in.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swarm.distill.dataset import Example
from swarm.errors import ConfigurationError, InvalidData
from swarm.manifest import Manifest
from swarm.serving.prompting import render_messages

MAX_RANK = 64
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights; logged beside them as ``training.json``."""

    base_model: str
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    epochs: float = 2.0
    max_steps: int = -1
    """Overrides ``epochs`` when positive."""
    learning_rate: float = 2e-4
    batch_size: int = 8
    gradient_accumulation: int = 1
    max_length: int = 512
    warmup_ratio: float = 0.05
    seed: int = 0
    precision: str = "auto"
    """``auto`` (bf16 where the hardware multiplies it natively, else fp32), ``bf16`` or
    ``fp32``."""

    def __post_init__(self) -> None:
        if not 1 <= self.rank <= MAX_RANK:
            raise ConfigurationError(f"LoRA rank must be between 1 and {MAX_RANK}, got {self.rank}")
        if self.precision not in PRECISIONS:
            raise ConfigurationError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    steps: int
    train_loss: float
    validation_loss: float | None
    seconds: float
    device: str
    trainable_parameters: int
    examples: int
    dropped_too_long: int
    precision: str = "fp32"
    """What the matmuls ran in: ``bf16`` (autocast) or ``fp32``."""


Progress = Callable[[str], None]


def encode(
    tokenizer: Any, manifest: Manifest, example: Example, max_length: int
) -> dict[str, list[int]] | None:
    """Token ids and labels with the prompt masked; None when longer than ``max_length``."""
    if example.output is None:
        raise InvalidData("a training example has no output label")
    messages = render_messages(manifest, example.input)
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    answer = {"role": "assistant", "content": json.dumps(example.output, ensure_ascii=False)}
    full = tokenizer.apply_chat_template([*messages, answer], tokenize=True)
    prompt, full = _ids(prompt), _ids(full)
    if full[: len(prompt)] != prompt:
        raise ConfigurationError(
            "the base model's chat template does not extend the prompt when an answer is added; "
            "completion-only loss cannot be masked for this model"
        )
    if len(full) > max_length:
        return None
    labels = [-100] * len(prompt) + full[len(prompt) :]
    return {"input_ids": full, "attention_mask": [1] * len(full), "labels": labels}


def native_bf16(cuda: bool) -> bool:
    """Whether this machine multiplies bf16 in hardware: the GPU, or the CPU's AVX512-BF16 or
    AMX units (where a CPU has neither, torch emulates bf16 and it is slower than fp32)."""
    import torch

    if cuda:
        return bool(torch.cuda.is_bf16_supported())
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def uses_bf16(precision: str, cuda: bool) -> bool:
    """Whether training with ``precision`` computes in bf16 on this machine."""
    if precision == "auto":
        return native_bf16(cuda)
    return precision == "bf16"


def _ids(encoded: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True).
    if hasattr(encoded, "input_ids") or isinstance(encoded, dict):
        encoded = encoded["input_ids"]
    return [int(i) for i in encoded]


def completion_loss(
    model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
) -> tuple[Any, Any]:
    """The loss and the model's outputs: logits only where a completion token is scored.

    The same loss as the model's own (labels shifted by one, -100 ignored, summed and divided by
    ``num_items_in_batch`` when the Trainer counts it, else averaged over this batch), but the
    output head sees only the positions that predict some row's completion token.
    """
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    targets = labels[:, 1:]
    # Positions whose next token is scored in at least one row: the completions' span.
    positions = (targets != -100).any(dim=0).nonzero().squeeze(-1)
    outputs = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs.get("attention_mask"),
        logits_to_keep=positions,
    )
    logits = outputs.logits
    kept = targets[:, positions]
    total = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        kept.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    if num_items_in_batch is None:
        num_items_in_batch = (kept != -100).sum()
    count = torch.as_tensor(num_items_in_batch, device=total.device).clamp(min=1)
    return total / count, outputs


def train_lora(
    config: TrainConfig,
    manifest: Manifest,
    train: Sequence[Example],
    validation: Sequence[Example],
    out_dir: Path,
    *,
    progress: Progress = print,
) -> TrainResult:
    """Train a LoRA on ``train``; save ``adapter_config.json`` and safetensors in ``out_dir``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    started = time.monotonic()
    cuda = torch.cuda.is_available()
    bf16 = uses_bf16(config.precision, cuda)
    precision = "bf16" if bf16 else "fp32"
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_rows = [encode(tokenizer, manifest, e, config.max_length) for e in train]
    val_rows = [encode(tokenizer, manifest, e, config.max_length) for e in validation]
    kept = [r for r in train_rows if r is not None]
    kept_val = [r for r in val_rows if r is not None]
    dropped = len(train_rows) - len(kept)
    if not kept:
        raise InvalidData(
            f"no training example fits in max_length={config.max_length} tokens; raise it"
        )
    progress(
        f"training on {len(kept)} examples ({dropped} longer than {config.max_length} tokens "
        f"dropped), validating on {len(kept_val)}, device {'cuda' if cuda else 'cpu'}, "
        f"{precision}"
    )
    # On a GPU the weights themselves are bf16; on a CPU they stay fp32 under bf16 autocast.
    model = AutoModelForCausalLM.from_pretrained(
        config.base_model, dtype=torch.bfloat16 if bf16 and cuda else torch.float32
    )
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    steps_per_epoch = math.ceil(len(kept) / (config.batch_size * config.gradient_accumulation))
    total_steps = (
        config.max_steps
        if config.max_steps > 0
        else max(1, math.ceil(steps_per_epoch * config.epochs))
    )

    class Report(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if not logs or "loss" not in logs:
                return
            elapsed = time.monotonic() - started
            done = max(1, state.global_step)
            eta = elapsed / done * (total_steps - done)
            progress(
                f"step {state.global_step}/{total_steps} loss {logs['loss']:.4f} "
                f"lr {logs.get('learning_rate', 0):.2e} eta {eta / 60:.1f} min"
            )

    args = TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        warmup_steps=max(0, round(total_steps * config.warmup_ratio)),
        lr_scheduler_type="cosine",
        logging_steps=max(1, min(10, total_steps // 10)),
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        seed=config.seed,
        bf16=bf16,
        use_cpu=not cuda,
        disable_tqdm=True,
        remove_unused_columns=False,
        prediction_loss_only=True,  # validation wants the loss, not every position's logits
    )

    class CompletionTrainer(Trainer):
        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            loss, outputs = completion_loss(model, inputs, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

    trainer = CompletionTrainer(
        model=peft_model,
        args=args,
        train_dataset=kept,
        eval_dataset=kept_val or None,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[Report()],
    )
    trainer.remove_callback(PrinterCallback)  # Report prints the same, with an ETA
    output = trainer.train()
    validation_loss = trainer.evaluate()["eval_loss"] if kept_val else None
    peft_model.to(dtype=torch.bfloat16)
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    return TrainResult(
        steps=int(output.global_step),
        train_loss=round(float(output.training_loss), 4),
        validation_loss=None if validation_loss is None else round(float(validation_loss), 4),
        seconds=round(time.monotonic() - started, 1),
        device="cuda" if cuda else "cpu",
        trainable_parameters=int(trainable),
        examples=len(kept),
        dropped_too_long=dropped,
        precision=precision,
    )
