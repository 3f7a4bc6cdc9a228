"""Cascade: quality and cost of student only, teacher only, and the calibrated cascade.

On a labelled held-out set (the specialist's generator, templates training never saw), split in
two halves measured in the same run:

1. calibration half: the student (the distilled adapter in ``adapters/<name>``, on vLLM)
   answers with token logprobs, as the worker would: an answer failing the specialist's checks
   is retried, and one that never passes escalates at any threshold (``--no-checks`` takes the
   first schema-valid answer instead); :mod:`swarm.distill.calibration` picks the confidence
   threshold that keeps quality >= ``--target`` x teacher quality with the least escalation;
2. test half: student only, teacher only, and the cascade with that threshold, each scored with
   the specialist's metric and priced: local tokens at the GPU-hour price and measured
   throughput (SWARM_LOCAL_*), teacher tokens at the teacher price table (SWARM_TEACHER_*).

No frontier API is reachable here, so the teacher is a local OpenAI-compatible server that
answers with the reference labels (a perfect teacher, reached over real HTTP through
:class:`swarm.distill.teacher.Teacher`), billing prompt and completion tokens counted with the base
model's tokenizer. Its quality is therefore 1.0 by construction; the cascade's figures are
relative to it.

With ``--data FILE`` the set is a labelled JSONL file instead, such as a real corpus's dev split
written by ``swarm corpus`` (``--examples`` then takes its first N): the teacher answers with that
file's human labels.

Usage: python bench/cascade.py [--specialist pii] [--examples 100] [--target 0.95] [--seed 1]
       [--no-checks] [--data FILE]
The last line printed is one JSON object with the figures. Needs `swarm model prepare` and a
trained adapter in adapters/<specialist>; starts vLLM unless SWARM_VLLM_URLS answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

# The repository first: tests/ holds folders named like its packages (tests/specialists/...),
# which would otherwise be imported as namespace packages in their place.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from specialists.distillation import find_specialist
from swarm.distill.calibration import choose, sweep
from swarm.distill.dataset import Example, read_examples
from swarm.distill.evaluation import answer, model_server, scorer_of
from swarm.distill.teacher import Prices, Teacher
from swarm.manifest import load_manifest
from swarm.serving.attempts import OUTPUT_RETRIES
from swarm.serving.basemodel import resolve_base_model
from swarm.serving.costs import local_cost_usd
from swarm.serving.modelclient import ModelClient
from swarm.serving.prompting import render_messages
from swarm.settings import Settings, get_settings

from conftest import free_port
from openaistub import openai_stub


def teacher_stub(examples: list[Example], tokenizer: Any) -> Any:
    """Replies with the gold output of whichever example the prompt holds."""
    gold = {json.dumps(e.input, ensure_ascii=False): e.output for e in examples}

    def reply(body: dict[str, Any]) -> tuple[int, Any]:
        output = gold[body["messages"][-1]["content"]]
        text = json.dumps(output, ensure_ascii=False)
        prompt = sum(len(tokenizer.encode(m["content"])) for m in body["messages"])
        return 200, {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(tokenizer.encode(text))},
        }  # fmt: skip

    return reply


async def run(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    spec = find_specialist(args.specialist, settings)
    score = scorer_of(spec)
    assert spec.generate is not None or args.data is not None
    folder = settings.adapters_dir / args.specialist
    manifest = load_manifest(folder, spec.name)
    if args.data is not None:
        examples = read_examples(args.data)[: args.examples]
    else:
        examples = spec.generate(args.examples, seed=args.seed, heldout=True)
    calibration, test = examples[: len(examples) // 2], examples[len(examples) // 2 :]
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(settings))
    prices = Prices(settings.teacher_input_usd_per_mtok, settings.teacher_output_usd_per_mtok)

    # As the worker answers: an answer that fails the specialist's checks is retried, sampling,
    # and one that never passes escalates whatever its confidence.
    retries = 0 if args.no_checks else OUTPUT_RETRIES
    check = None if args.no_checks else spec.check
    async with ModelClient(settings, base_url=url, timeout_s=1800) as client:
        await client.load_adapter("bench-cascade", str(folder.resolve()))
        calibrated, answers = [
            await answer(client, "bench-cascade", manifest, chosen, concurrency=16,
                         logprobs=True, check=check, retries=retries, finish=spec.finish)
            for chosen in (calibration, test)
        ]  # fmt: skip
        await client.unload_adapter("bench-cascade")

    def per_example(chosen: list[Example], outputs: list[dict[str, Any] | None]) -> list[float]:
        return [float(score([e], [o])["score"]) for e, o in zip(chosen, outputs, strict=True)]

    curve = sweep(
        [a.confidence for a in calibrated], per_example(calibration, [a.output for a in calibrated])
    )
    point = choose(curve, args.target * 1.0)
    threshold = point.threshold if point else float("inf")

    with openai_stub(teacher_stub(examples, tokenizer), free_port()) as stub:
        async with Teacher(url=stub.url, model="teacher", prices=prices) as teacher:
            teacher_labels = [
                await teacher.label(render_messages(spec.manifest, e.input),
                                    manifest.output_schema)
                for e in test
            ]  # fmt: skip
    student_outputs = [a.output for a in answers]
    student_cost = sum(
        local_cost_usd(settings, a.prompt_tokens, a.completion_tokens) for a in answers
    )
    teacher_cost = sum(label.cost_usd for label in teacher_labels)
    escalate = [a.confidence is None or a.confidence < threshold for a in answers]
    cascade_outputs = [
        label.output if up else a.output
        for up, label, a in zip(escalate, teacher_labels, answers, strict=True)
    ]
    cascade_cost = student_cost + sum(
        label.cost_usd for up, label in zip(escalate, teacher_labels, strict=True) if up
    )
    student_q = float(score(test, student_outputs)["score"])
    teacher_q = float(score(test, [label.output for label in teacher_labels])["score"])
    cascade_q = float(score(test, cascade_outputs)["score"])
    return {
        "specialist": args.specialist,
        "set": str(args.data) if args.data else "generator (held-out templates)",
        "metric": spec.metric,
        "checks_and_retries": not args.no_checks,
        "examples": {"calibration": len(calibration), "test": len(test)},
        "threshold": round(threshold, 4) if point else None,
        "calibration_escalation_rate": round(point.escalation_rate, 4) if point else None,
        "student": {"quality": round(student_q, 4), "cost_usd": round(student_cost, 6)},
        "teacher": {"quality": round(teacher_q, 4), "cost_usd": round(teacher_cost, 6)},
        "cascade": {
            "quality": round(cascade_q, 4),
            "cost_usd": round(cascade_cost, 6),
            "escalation_rate": round(sum(escalate) / len(test), 4),
        },
        "cascade_quality_vs_teacher": round(cascade_q / teacher_q, 4) if teacher_q else None,
        "cascade_cost_vs_teacher": round(cascade_cost / teacher_cost, 4) if teacher_cost else None,
        "targets": {"quality_vs_teacher_min": 0.95, "cost_vs_teacher_max": 0.20},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specialist", default="pii")
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-checks",
        action="store_true",
        help="take the student's first schema-valid answer, skipping the specialist's checks "
        "and the worker's retries (how this bench measured before they were applied)",
    )
    parser.add_argument("--data", type=Path, help="labelled JSONL (a real dev split)")
    args = parser.parse_args()
    settings = get_settings()
    with model_server(settings, print) as url:
        figures = asyncio.run(run(settings, url, args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
