"""``swarm distill`` end to end on the real small model: a few training steps, real vLLM."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from specialists.builtin import BUILTINS
from specialists.builtin.sql import data as sqldata
from specialists.cascade import Cascade, read_escalations
from specialists.distillation import find_specialist
from specialists.folders import safetensors_header, validate_adapter_folder
from swarm import names
from swarm.connections import connect
from swarm.distill.dataset import Example, read_examples, write_examples
from swarm.distill.evalcard import add_eval_set, eval_document, eval_markdown
from swarm.distill.evaluation import EvalReport
from swarm.distill.pipeline import DistillOptions, Pipeline, bump_version
from swarm.distill.training import TrainConfig
from swarm.errors import ConfigurationError, UnknownSpecialist
from swarm.manifest import load_manifest
from swarm.serving.basemodel import BASES, DEFAULT_BASE
from swarm.settings import DEFAULT_BASE_MODEL, Settings

from conftest import VllmServer, cpu_multiplies_bf16, free_port
from openaistub import completion, openai_stub
from redisfixture import TEST_REDIS_URL

TINY = TrainConfig(base_model="", rank=8, alpha=16, max_steps=2, batch_size=4, max_length=384)


def run(settings: Settings, name: str, tmp: Path, **options: Any) -> tuple[Any, list[str]]:
    said: list[str] = []
    opts = DistillOptions(
        run_dir=tmp / "run", out_dir=tmp / "adapters" / name, train=TINY, eval_concurrency=8,
        **options,
    )  # fmt: skip
    result = Pipeline(settings, find_specialist(name, settings), opts, say=said.append).run()
    return result, said


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_reference_pipeline_packages_a_servable_adapter_and_resumes(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    settings = vllm_server.settings
    result, said = run(settings, "sql", tmp_path, teacher="reference", examples=24,
                       test_examples=4)  # fmt: skip
    out = tmp_path / "adapters" / "sql"
    assert result.packaged and result.out_dir == out
    assert result.split == {"train": 23, "validation": 1, "test": 4, "extra_train": 0}
    # The folder: weights, manifest with the version bumped, training config, eval report.
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "eval.json", "eval.md",
        "specialist.yaml", "training.json",
    ]  # fmt: skip
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == DEFAULT_BASE.upstream_id and config["r"] == 8
    # Sorted, so retraining the same adapter rewrites the same file.
    assert config["target_modules"] == sorted(config["target_modules"])
    dtypes = {t["dtype"] for k, t in safetensors_header(out / "adapter_model.safetensors").items()
              if k != "__metadata__"}  # fmt: skip
    assert dtypes == {"BF16"}
    manifest = load_manifest(out)
    assert manifest.version == "0.2.0" and manifest.few_shot == []
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["metric"] == "execution_accuracy"
    for model in ("student", "base_zero_shot", "base_few_shot"):
        report = evaluation[model]
        assert 0.0 <= report["score"] <= 1.0 and report["examples"] == 4
        assert report["latency_ms_p50"] > 0 and 0.0 <= report["json_validity"] <= 1.0
    assert "| execution_accuracy (score) |" in (out / "eval.md").read_text()
    training = json.loads((out / "training.json").read_text())
    assert training["config"]["max_steps"] == 2 and training["result"]["steps"] == 2
    # "auto": bf16 autocast exactly where this CPU multiplies bf16 in hardware.
    assert training["config"]["precision"] == "auto"
    assert training["result"]["precision"] == ("bf16" if cpu_multiplies_bf16() else "fp32")
    # The registry would serve it.
    spec = validate_adapter_folder(out, settings)
    assert spec.has_weights
    # A shipped adapter is re-scored, beside the base, into a report of the same shape.
    rescored = tmp_path / "rescored"
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("swarm")), "eval", "sql", "--data",
         str(tmp_path / "run" / "heldout.jsonl"), "--adapter", str(out), "--report", str(rescored)],
        env={**os.environ, "SWARM_VLLM_URLS": settings.vllm_urls[0],
             "SWARM_HOME": str(settings.home)},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    report = json.loads((rescored / "eval.json").read_text())
    assert set(report) >= {"metric", "student", "base_zero_shot", "base_few_shot"}
    assert report["student"]["examples"] == 4
    assert "| execution_accuracy (score) |" in (rescored / "eval.md").read_text()

    # A re-run does nothing again; a new learning rate re-trains without relabelling.
    _, again = run(settings, "sql", tmp_path, teacher="reference", examples=24, test_examples=4)
    assert [line for line in again if line.endswith(": cached")] == [
        "heldout: cached", "inputs: cached", "labels: cached", "split: cached", "train: cached",
        "evaluate: cached",
    ]  # fmt: skip
    assert any("already holds these weights" in line for line in again)

    # The flywheel: escalations kept in Redis, exported, and retrained on with the old data
    # (with a new learning rate too: training reruns, labelling stays cached).
    settings = settings.model_copy(update={"redis_url": TEST_REDIS_URL})
    escalated = sqldata.generate(3, seed=11)
    asyncio.run(keep_escalations(settings, escalated))
    exported = tmp_path / "escalations.jsonl"
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("swarm")), "escalations", "sql", "-o", str(exported)],
        env={**os.environ, "SWARM_REDIS_URL": TEST_REDIS_URL},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert [e.input for e in read_examples(exported)] == [e.input for e in escalated]
    said.clear()
    opts = DistillOptions(
        teacher="reference", examples=24, test_examples=4, run_dir=tmp_path / "run",
        out_dir=out, train=replace(TINY, learning_rate=1e-4),
        extra_train=asyncio.run(escalations_of(settings)),
    )  # fmt: skip
    result = Pipeline(settings, find_specialist("sql", settings), opts, say=said.append).run()
    assert "labels: cached" in said and "train: cached" not in said
    assert result.split["extra_train"] == 3
    new, current = result.evaluation["student"]["score"], result.evaluation["current"]["score"]
    assert result.packaged == (new >= current)


async def keep_escalations(settings: Settings, examples: list[Example]) -> None:
    redis = await connect(settings.redis_url)
    await redis.delete(names.escalations_stream("sql"))
    cascade = Cascade(redis, settings, None)
    manifest = find_specialist("sql", settings).manifest
    for e in examples:
        assert e.output is not None
        await cascade.record(manifest, e.input, e.output, "invalid output", "t", "s", None)
    await redis.aclose()


async def escalations_of(settings: Settings) -> list[Example]:
    redis = await connect(settings.redis_url)
    try:
        return await read_escalations(redis, "sql")
    finally:
        await redis.aclose()


def test_a_worse_version_is_not_packaged(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, adapters_dir=tmp_path / "adapters")
    out = tmp_path / "adapters" / "sql"
    out.mkdir(parents=True)
    (out / "specialist.yaml").write_text("old")
    said: list[str] = []
    pipeline = Pipeline(
        settings,
        find_specialist("sql", settings),
        DistillOptions(teacher="reference", out_dir=out, run_dir=tmp_path / "run"),
        say=said.append,
    )
    evaluation = {"metric": "execution_accuracy", "student": {"score": 0.4},
                  "current": {"score": 0.5}}  # fmt: skip
    assert pipeline._package("key", evaluation) is False
    assert (out / "specialist.yaml").read_text() == "old"
    assert said == [
        f"package: not packaged; the new student scores 0.400, below the current version's "
        f"0.500 in {out}"
    ]


def test_a_packaged_manifest_names_the_base_it_was_trained_on(tmp_path: Path) -> None:
    """Trained on another base than the built-in's, the folder says so, or the registry would
    load it onto the wrong one."""
    other = next(name for name in BASES if name != DEFAULT_BASE_MODEL)
    settings = Settings(home=tmp_path, adapters_dir=tmp_path / "adapters", base_model=other)
    run_dir, out = tmp_path / "run", tmp_path / "adapters" / "sql"
    (run_dir / "adapter").mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (run_dir / "adapter" / name).write_bytes(b"{}")
    (run_dir / "training.json").write_text("{}")
    (run_dir / "eval.md").write_text("# eval")
    pipeline = Pipeline(
        settings,
        find_specialist("sql", settings),
        DistillOptions(teacher="reference", out_dir=out, run_dir=run_dir),
        say=lambda _line: None,
    )
    assert pipeline._package("key", {"student": {"score": 0.5}}) is True
    manifest = load_manifest(out)
    assert manifest.base_model == other != BUILTINS["sql"].manifest.base_model
    assert manifest.version == "0.2.0" and manifest.few_shot == []


def test_a_changed_generator_is_not_served_from_the_cache(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, adapters_dir=tmp_path / "adapters")
    spec = find_specialist("sql", settings)
    options = DistillOptions(teacher="reference", examples=6, test_examples=3,
                             run_dir=tmp_path / "run")  # fmt: skip

    def stages(generate: Any) -> list[str]:
        said: list[str] = []
        pipeline = Pipeline(settings, replace(spec, generate=generate), options, say=said.append)
        pipeline._heldout()
        pipeline._inputs()
        return said

    assert stages(sqldata.generate) == [
        "heldout: 3 examples from unseen templates and sources",
        "inputs: 6 from the built-in generator",
    ]
    assert stages(sqldata.generate) == ["heldout: cached", "inputs: cached"]

    def reworded(n: int, *, seed: int = 0, heldout: bool = False) -> list[Example]:
        examples = sqldata.generate(n, seed=seed, heldout=heldout)
        return [Example({**e.input, "question": e.input["question"] + " Please."}, e.output,
                        e.meta) for e in examples]  # fmt: skip

    # New phrasings in the generator: both sets are made again, not read back from the cache.
    assert stages(reworded) == [
        "heldout: 3 examples from unseen templates and sources",
        "inputs: 6 from the built-in generator",
    ]
    inputs = read_examples(tmp_path / "run" / "inputs.jsonl")
    assert all(e.input["question"].endswith(" Please.") for e in inputs)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_teacher_endpoint_labels_raw_inputs_and_drops_invalid_replies(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    inputs = [Example({"text": f"Ana Lima visited Porto on day {i}."}) for i in range(11)]
    inputs.append(Example({"text": "This one the teacher botches."}))
    data = tmp_path / "inputs.jsonl"
    write_examples(data, inputs)

    def teacher(body: dict[str, Any]) -> tuple[int, Any]:
        text = json.loads(body["messages"][-1]["content"])["text"]
        if "botches" in text:
            return 200, completion("not json at all")
        gold = [{"text": "Ana Lima", "type": "PERSON"}, {"text": "Porto", "type": "LOCATION"}]
        return 200, completion(json.dumps({"entities": gold}))

    with openai_stub(teacher, free_port()) as stub:
        settings = vllm_server.settings.model_copy(
            update={
                "teacher_url": stub.url,
                "teacher_model": "frontier",
                "teacher_cache": tmp_path / "cache.sqlite",
            }
        )
        result, _ = run(settings, "entities", tmp_path, teacher="endpoint", data=data)
        asked = len(stub.requests)
        labels = result.labels
        assert labels["labelled"] == 11 and labels["invalid"] == 1 and labels["calls"] == 12
        assert labels["cost_usd"] > 0
        assert result.split["train"] + result.split["validation"] + result.split["test"] == 11
        # Asked with the full prompt (few-shot included) and a strict schema.
        assert stub.requests[0]["response_format"]["json_schema"]["strict"] is True
        # A fresh run dir re-labels from the teacher cache: nothing is paid twice.
        run(settings, "entities", tmp_path / "again", teacher="endpoint", data=data)
        assert len(stub.requests) == asked


def test_unknown_specialist_and_missing_teacher_are_clear(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, adapters_dir=tmp_path / "adapters")
    with pytest.raises(UnknownSpecialist, match="not built in"):
        find_specialist("nope", settings)
    spec = find_specialist("sql", settings)
    with pytest.raises(ConfigurationError, match="unknown teacher"):
        Pipeline(settings, spec, DistillOptions(teacher="gpt"), say=print)
    custom = tmp_path / "adapters" / "notes"
    custom.mkdir(parents=True)
    manifest = {**spec.manifest.document(), "name": "notes"}
    (custom / "specialist.yaml").write_text(yaml.safe_dump(manifest))
    notes = find_specialist("notes", settings)
    assert notes.metric == "exact_match" and notes.generate is None
    with pytest.raises(ConfigurationError, match="no built-in generator"):
        Pipeline(settings, notes, DistillOptions(teacher="reference"), say=print)


def test_version_bump() -> None:
    assert bump_version("0.1.0") == "0.2.0"
    assert bump_version("1") == "1.1.0"
    assert bump_version("2.9.3") == "2.10.0"


def pii_report(name: str, score: float, alone: float) -> EvalReport:
    return EvalReport(
        model=name, metric="span_f1", score=score, metrics={"score": score}, examples=2,
        json_validity=1.0, check_pass=1.0, latency_ms_p50=1.0, latency_ms_p95=2.0,
        model_only={"score": alone},
    )  # fmt: skip


def test_a_named_set_is_added_to_an_eval_json_keeping_the_others(tmp_path: Path) -> None:
    spec = find_specialist("pii", Settings())
    first = {"student": pii_report("student", 0.9, 0.7)}
    data = tmp_path / "other.jsonl"
    data.write_text("")
    (tmp_path / "other.jsonl.sources.json").write_text(
        json.dumps({"sources": [{"name": "other", "repository": "o/r", "commit": "abc"}]})
    )
    add_eval_set(tmp_path, spec, "dev", first, data)
    document = add_eval_set(tmp_path, spec, "other", {"student": pii_report("s", 0.5, 0.4)}, data)
    assert document["student"]["score"] == 0.9 and document["set"] == "dev"  # the headline
    assert set(document["sets"]) == {"dev", "other"}
    assert document["sets"]["other"]["student"]["score"] == 0.5
    assert document["sets"]["other"]["sources"][0]["repository"] == "o/r"
    again = add_eval_set(tmp_path, spec, "other", {"student": pii_report("s", 0.6, 0.4)}, data)
    assert again["sets"]["other"]["student"]["score"] == 0.6 and len(again["sets"]) == 2
    notes = (tmp_path / "eval.md").read_text()
    assert notes.count("## other") == 1 and notes.count("## dev") == 1
    assert json.loads((tmp_path / "eval.json").read_text()) == again


def test_a_specialist_with_a_finish_step_reports_its_model_alone_too() -> None:
    spec = find_specialist("pii", Settings())
    assert spec.finish is not None
    reports = {
        "student": pii_report("student", 0.9, 0.7),
        "base_zero_shot": pii_report("base_zero_shot", 0.3, 0.0),
        "base_few_shot": pii_report("base_few_shot", 0.4, 0.1),
    }
    document = eval_document(spec, reports)
    assert document["student"]["score"] == 0.9
    assert document["student"]["model_only"] == {"score": 0.7}
    assert document["student_vs_best_base"] == 2.25
    table = eval_markdown(spec, reports)
    assert "| span_f1, model before finish | 0.700 | 0.000 | 0.100 |" in table
