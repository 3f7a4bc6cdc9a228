"""``swarm worker``, ``registry``, ``distill`` and ``eval`` (plugged in via ``swarm.commands``)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from swarm import eventloop
from swarm.errors import ConfigurationError, InvalidAdapter, InvalidData
from swarm.settings import get_settings, setup_observability


def worker(
    specialist: list[str] = typer.Option(
        None, "--specialist", "-s", help="Serve only these specialists (repeatable); default all."
    ),
) -> None:
    """Run specialist steps: prompt, call vLLM with the adapter and schema, validate, reply."""
    from specialists.worker import run_worker

    settings = get_settings()
    setup_observability(settings, "swarm-worker")
    eventloop.run(run_worker(settings, specialist or None))


def registry() -> None:
    """Watch the adapters dir: validate, load into vLLM and publish each specialist."""
    from specialists.registry import run_registry

    settings = get_settings()
    setup_observability(settings, "swarm-registry")
    eventloop.run(run_registry(settings))


def distill(
    specialist: str = typer.Argument(..., help="Built-in (sql, pii, entities) or adapters/<name>."),
    teacher: str = typer.Option(
        "endpoint",
        "--teacher",
        help="'endpoint': label with SWARM_TEACHER_URL/MODEL; 'reference': the built-in "
        "generator's exact gold labels (no API calls).",
    ),
    data: Path | None = typer.Option(
        None, "--data", help="JSONL of inputs (one object a line); default: synthetic inputs."
    ),
    examples: int = typer.Option(1000, "--examples", "-n", help="Synthetic inputs to generate."),
    test_examples: int = typer.Option(200, "--test-examples", help="Held-out test examples."),
    seed: int = typer.Option(0, "--seed"),
    rank: int = typer.Option(16, "--rank", help="LoRA rank (at most 64)."),
    alpha: int = typer.Option(32, "--alpha", help="LoRA alpha."),
    epochs: float = typer.Option(2.0, "--epochs"),
    max_steps: int = typer.Option(-1, "--max-steps", help="Stop after this many steps (> 0)."),
    learning_rate: float = typer.Option(2e-4, "--lr"),
    batch_size: int = typer.Option(8, "--batch-size"),
    max_length: int = typer.Option(512, "--max-length", help="Longer examples are dropped."),
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="auto: bf16 where the GPU or CPU multiplies it natively (AVX512-BF16, AMX), else "
        "fp32; or bf16, fp32.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Package here; default adapters/<name>."),
    run_dir: Path | None = typer.Option(
        None, "--run-dir", help="Stage outputs and cache; default $SWARM_HOME/distill/<name>."
    ),
    labelled: list[Path] = typer.Option(
        [],
        "--labelled",
        help="Gold-labelled JSONL ({input, output}), e.g. a corpus's train split written by "
        "`swarm corpus`; train on it instead of asking a teacher. Repeatable.",
    ),
    test: list[str] = typer.Option(
        [],
        "--test",
        help="NAME=FILE: a gold-labelled test set to evaluate on (dev/test splits not trained "
        "on); the first decides packaging. Repeatable.",
    ),
    from_escalations: bool = typer.Option(
        False,
        "--from-escalations",
        help="Add the escalations kept in Redis (inputs with the teacher's answers) to training; "
        "the new version is packaged only if it scores at least as well as the current one.",
    ),
) -> None:
    """Distil a specialist: inputs -> teacher labels -> LoRA -> evaluation -> adapter folder.

    Every stage is cached in the run dir, so a re-run resumes and never pays the teacher twice.
    """
    from specialists.distillation import find_specialist
    from swarm.distill.pipeline import DistillOptions, Pipeline
    from swarm.distill.training import TrainConfig

    settings = get_settings()
    logging.basicConfig(level="WARNING", stream=sys.stderr)
    spec = find_specialist(specialist, settings)
    extra = asyncio.run(_escalations(settings, specialist)) if from_escalations else []
    if from_escalations:
        if not extra:
            raise InvalidData(f"no escalations of {specialist!r} are kept in Redis to train on")
        typer.echo(f"escalations: {len(extra)} added to training")
    tests: dict[str, Path] = {}
    for item in test:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigurationError(f"--test takes NAME=FILE, not {item!r}")
        tests[name] = Path(path)
    options = DistillOptions(
        teacher="reference" if labelled else teacher,
        data=data,
        examples=examples,
        test_examples=test_examples,
        seed=seed,
        train=TrainConfig(
            base_model="",
            rank=rank,
            alpha=alpha,
            epochs=epochs,
            max_steps=max_steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_length=max_length,
            seed=seed,
            precision=precision,
        ),
        out_dir=out,
        run_dir=run_dir,
        extra_train=extra,
        labelled=tuple(labelled),
        tests=tests,
    )
    result = Pipeline(settings, spec, options, say=typer.echo).run()
    student = result.evaluation["student"]
    typer.echo(
        f"done: {spec.metric} {student['score']:.3f} (base zero-shot "
        f"{result.evaluation['base_zero_shot']['score']:.3f}, few-shot "
        f"{result.evaluation['base_few_shot']['score']:.3f}); "
        + (f"packaged in {result.out_dir}" if result.packaged else "not packaged")
    )


def evaluate(
    specialist: str = typer.Argument(..., help="Built-in (sql, pii, entities) or adapters/<name>."),
    data: Path = typer.Option(..., "--data", help="Labelled JSONL: {input, output[, meta]}."),
    adapter: Path | None = typer.Option(
        None, "--adapter", help="An adapter folder (adapter_config.json + safetensors)."
    ),
    base: bool = typer.Option(False, "--base", help="Score the base model instead."),
    few_shot: bool = typer.Option(
        True, "--few-shot/--zero-shot", help="With --base: include the manifest's examples."
    ),
    concurrency: int = typer.Option(16, "--concurrency"),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="With --adapter: also score the base model zero-shot and few-shot, and write "
        "eval.json and eval.md into this folder as swarm distill packages them.",
    ),
    set_name: str | None = typer.Option(
        None,
        "--set",
        help="With --report: add these figures to the folder's eval.json as the named set "
        "(its source read from DATA's .sources.json), keeping the sets already there.",
    ),
) -> None:
    """Score an adapter, or the base model, on a labelled JSONL; the last line is JSON."""
    import json

    from specialists.distillation import find_specialist
    from swarm.distill.dataset import read_examples
    from swarm.distill.evalcard import add_eval_set, write_eval_report
    from swarm.distill.evaluation import evaluate_models, markdown_table, model_server
    from swarm.manifest import MANIFEST_FILE, load_manifest
    from swarm.serving.basemodel import served_base_name

    if (adapter is None) == (not base):
        raise ConfigurationError("give exactly one of --adapter PATH or --base")
    if report is not None and adapter is None:
        raise ConfigurationError("--report compares an adapter with the base: give --adapter")
    if set_name is not None and report is None:
        raise ConfigurationError("--set names a set of the eval.json --report writes: give both")
    settings = get_settings()
    spec = find_specialist(specialist, settings)
    examples = read_examples(data)
    unlabelled = sum(1 for e in examples if e.output is None)
    if unlabelled:
        raise InvalidData(f"{unlabelled} examples in {data} have no 'output' to score")
    if adapter is not None:
        if not (adapter / "adapter_config.json").is_file():
            raise InvalidAdapter(adapter.name, f"{adapter} has no adapter_config.json")
        manifest = (
            load_manifest(adapter, spec.name)
            if (adapter / MANIFEST_FILE).is_file()
            else spec.manifest.without_few_shot()
        )
        runs = {"student" if report else "adapter": ("swarm-eval-adapter", manifest)}
        adapters = {"swarm-eval-adapter": adapter}
        if report is not None:
            runs["base_zero_shot"] = (served_base_name(settings), spec.manifest.without_few_shot())
            runs["base_few_shot"] = (served_base_name(settings), spec.manifest)
    else:
        manifest = spec.manifest if few_shot else spec.manifest.without_few_shot()
        runs = {"base": (served_base_name(settings), manifest)}
        adapters = {}
    with model_server(settings, typer.echo) as url:
        reports = asyncio.run(
            evaluate_models(
                settings, url, spec, examples, runs, adapters=adapters, concurrency=concurrency
            )
        )
    typer.echo(markdown_table(reports))
    if report is not None and set_name is not None:
        add_eval_set(report, spec, set_name, reports, data)
        typer.echo(f"added the set {set_name!r} to {report / 'eval.json'} and eval.md")
    elif report is not None:
        report.mkdir(parents=True, exist_ok=True)
        write_eval_report(report, spec, reports)
        typer.echo(f"wrote {report / 'eval.json'} and {report / 'eval.md'}")
    typer.echo(json.dumps({name: r.to_json() for name, r in reports.items()}))


def calibrate(
    specialist: str = typer.Argument(..., help="Built-in (sql, pii, entities) or adapters/<name>."),
    data: Path = typer.Option(..., "--data", help="Labelled JSONL: {input, output[, meta]}."),
    target_quality: float = typer.Option(
        ..., "--target-quality", "-q", help="Cascade quality to keep, in the metric's units."
    ),
    adapter: Path | None = typer.Option(
        None, "--adapter", help="Adapter folder; default adapters/<name> (base if no weights)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the plot; default $SWARM_HOME/calibration/<name>."
    ),
    write: bool = typer.Option(
        False, "--write", help="Set escalation.min_confidence in the adapter's specialist.yaml."
    ),
) -> None:
    """Pick the confidence threshold that keeps quality >= Q while escalating the least."""
    import json

    import yaml

    from specialists.distillation import find_specialist
    from swarm.distill.calibration import calibrate as sweep_threshold
    from swarm.distill.calibration import plot, report, table
    from swarm.distill.dataset import read_examples
    from swarm.distill.evaluation import model_server, scorer_of
    from swarm.manifest import MANIFEST_FILE, load_manifest
    from swarm.serving.attempts import OUTPUT_RETRIES
    from swarm.serving.basemodel import served_base_name
    from swarm.serving.modelclient import ModelClient

    settings = get_settings()
    spec = find_specialist(specialist, settings)
    examples = [e for e in read_examples(data) if e.output is not None]
    if not examples:
        raise InvalidData(f"{data} has no labelled examples ('output') to calibrate on")
    folder = adapter or settings.adapters_dir / specialist
    has_weights = (folder / "adapter_config.json").is_file()
    if adapter is not None and not has_weights:
        raise InvalidAdapter(adapter.name, f"{adapter} has no adapter_config.json")
    manifest = (
        load_manifest(folder, spec.name) if (folder / MANIFEST_FILE).is_file() else spec.manifest
    )

    async def run(url: str) -> Any:
        async with ModelClient(settings, base_url=url, timeout_s=1800) as client:
            model = served_base_name(settings)
            if has_weights:
                model = "swarm-calibrate"
                await client.load_adapter(model, str(folder.resolve()))
            try:
                return await sweep_threshold(
                    client, model, manifest, examples, scorer_of(spec),
                    target_quality=target_quality,
                    check=spec.check, retries=OUTPUT_RETRIES, finish=spec.finish,
                )  # fmt: skip
            finally:
                if has_weights:
                    await client.unload_adapter(model)

    with model_server(settings, typer.echo) as url:
        result = asyncio.run(run(url))
    where = out or settings.home / "calibration" / specialist
    png = plot(result.points, result.chosen, target_quality, where / "calibration.png")
    document = {"specialist": specialist, "metric": spec.metric, "examples": result.examples,
                "student_quality": result.student_quality,
                **report(result.points, result.chosen, target_quality)}  # fmt: skip
    (where / "calibration.json").write_text(json.dumps(document, indent=2) + "\n")
    typer.echo(table(result.points, result.chosen))
    typer.echo(f"plot: {png}")
    if result.chosen is None:
        raise InvalidData(f"even sending everything to the teacher misses quality {target_quality}")
    chosen = result.chosen
    typer.echo(
        f"min_confidence {chosen.threshold:.4f}: escalates {chosen.escalation_rate:.1%} of steps, "
        f"quality {chosen.quality:.3f} (student alone {result.student_quality:.3f})"
    )
    if write:
        path = folder / MANIFEST_FILE
        document_yaml = yaml.safe_load(path.read_text())
        document_yaml.setdefault("escalation", {})["min_confidence"] = round(chosen.threshold, 4)
        path.write_text(yaml.safe_dump(document_yaml, sort_keys=False, allow_unicode=True))
        typer.echo(f"wrote escalation.min_confidence to {path}")
    typer.echo(json.dumps(document["chosen"]))


async def _escalations(settings: Any, specialist: str) -> list[Any]:
    from specialists.cascade import read_escalations
    from swarm.connections import connect

    redis = await connect(settings.redis_url)
    try:
        return await read_escalations(redis, specialist)
    finally:
        await redis.aclose()


def escalations(
    specialist: str = typer.Argument(..., help="Whose escalations to export."),
    out: Path | None = typer.Option(None, "--out", "-o", help="JSONL file; default stdout."),
) -> None:
    """Export a specialist's kept escalations (input + teacher output) as labelled JSONL."""
    import json

    from swarm.distill.dataset import write_examples

    settings = get_settings()
    examples = asyncio.run(_escalations(settings, specialist))
    if out is not None:
        write_examples(out, examples)
        typer.echo(f"{len(examples)} escalations written to {out}", err=True)
        return
    for example in examples:
        typer.echo(json.dumps(example.to_json(), ensure_ascii=False))


def corpus(
    name: str = typer.Argument(..., help="See `swarm corpus --help`."),
    path: Path = typer.Argument(..., help="The corpus file, a local copy (nothing is fetched)."),
    out: Path = typer.Option(..., "--out", help="Where to write the examples (JSONL)."),
    limit: int | None = typer.Option(None, "--limit", help="A seeded sample of this many."),
    skip: int = typer.Option(0, "--skip", help="Drop the first N of the sample (disjoint sets)."),
    seed: int = typer.Option(0, "--seed"),
    max_chars: int | None = typer.Option(
        None,
        "--max-chars",
        help="Keep only examples whose input and output, as JSON, are this "
        "short (before sampling): a training run's length budget.",
    ),
    repository: str = typer.Option(..., "--repository", help="Where the copy came from."),
    commit: str = typer.Option(..., "--commit", help="The repository's commit (or version)."),
    split: str = typer.Option(..., "--split", help="train, dev, test..."),
    licence: str = typer.Option(..., "--licence", help="The data's licence, as its source says."),
) -> None:
    """Turn a public corpus's file into a specialist's labelled examples, with their source.

    Corpora: conll2003, wnut17 and wikigold (entities), spider (sql), and conll2003-pii,
    wnut17-pii and wikigold-pii (pii: the corpus's people in real sentences, plus placed values).

    Writes OUT and OUT.sources.json; `swarm distill --labelled OUT` records the source in the
    adapter's training.json, and `--test NAME=OUT` in its eval.json.
    """
    import json
    import random

    from specialists.builtin.corpora import Source, load
    from swarm.distill.dataset import write_examples

    sample = None if limit is None else limit + skip
    heldout = split != "train"
    examples = load(
        name, path, limit=None if max_chars is not None else sample, seed=seed, heldout=heldout
    )
    if max_chars is not None:
        examples = [e for e in examples if len(json.dumps(e.input)) + len(json.dumps(e.output))
                    <= max_chars]  # fmt: skip
        if sample is not None and sample < len(examples):
            keep = sorted(random.Random(seed).sample(range(len(examples)), sample))
            examples = [examples[i] for i in keep]
    examples = examples[skip:]
    write_examples(out, examples)
    source = Source(
        name=name, repository=repository, commit=commit, files=(path.name,), split=split,
        licence=licence, examples=len(examples),
    )  # fmt: skip
    sidecar = out.with_name(out.name + ".sources.json")
    sampled = {**source.to_json(), "limit": limit, "skip": skip, "seed": seed}
    if max_chars is not None:
        sampled["max_chars"] = max_chars
    sidecar.write_text(json.dumps({"sources": [sampled]}, indent=2))
    typer.echo(f"{len(examples)} {name} examples in {out} (source in {sidecar})")
