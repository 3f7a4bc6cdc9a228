"""Training's loss: only completion positions reach the output head, and the loss is unchanged;
bf16 autocast where the hardware multiplies bf16, and a loss within a hair of fp32's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

from specialists.builtin import BUILTINS
from swarm.distill.dataset import Example
from swarm.distill.training import TrainConfig, completion_loss, encode, uses_bf16
from swarm.errors import ConfigurationError

from conftest import cpu_multiplies_bf16

SENTENCES = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
    "Shares of Siemens rose 3 percent in Frankfurt.",
    "The talks in Geneva ended without a deal, a United Nations spokesman said.",
]


@pytest.fixture(scope="module")
def batch(default_model_dir: Path) -> tuple[object, dict[str, torch.Tensor]]:
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32).eval()
    manifest = BUILTINS["entities"].manifest
    answers = [{"entities": [{"text": s.split()[0], "type": "PERSON"}]} for s in SENTENCES]
    rows = [
        encode(tokenizer, manifest, Example(input={"text": s}, output=a), max_length=512)
        for s, a in zip(SENTENCES, answers, strict=True)
    ]
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    return model, collate([r for r in rows if r is not None])


def test_the_loss_equals_the_models_own_on_every_position(batch: tuple) -> None:
    model, inputs = batch
    with torch.no_grad():
        reference = model(**inputs).loss
        loss, outputs = completion_loss(model, dict(inputs))
    assert torch.allclose(loss, reference, atol=1e-5), (float(loss), float(reference))
    # Rows of different lengths, padded: the head saw fewer positions than the sequence has.
    assert outputs.logits.shape[1] < inputs["input_ids"].shape[1] // 2


def test_a_count_from_the_trainer_divides_the_summed_loss(batch: tuple) -> None:
    model, inputs = batch
    scored = int((inputs["labels"][:, 1:] != -100).sum())
    with torch.no_grad():
        mean, _ = completion_loss(model, dict(inputs))
        halved, _ = completion_loss(model, dict(inputs), num_items_in_batch=2 * scored)
    assert torch.allclose(halved, mean / 2, atol=1e-6)


def test_auto_precision_is_bf16_exactly_where_the_cpu_multiplies_it() -> None:
    assert uses_bf16("auto", cuda=False) == cpu_multiplies_bf16()
    assert uses_bf16("bf16", cuda=False) and not uses_bf16("fp32", cuda=False)
    with pytest.raises(ConfigurationError, match="precision must be one of auto, bf16, fp32"):
        TrainConfig(base_model="", precision="fp16")


def test_bf16_autocast_keeps_the_loss_within_a_percent_of_fp32(batch: tuple) -> None:
    model, inputs = batch
    with torch.no_grad():
        reference, _ = completion_loss(model, dict(inputs))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, outputs = completion_loss(model, dict(inputs))
    assert outputs.logits.dtype == torch.bfloat16  # it did compute in bf16
    assert loss.dtype == torch.float32
    assert abs(float(loss) - float(reference)) <= 0.01 * float(reference)
