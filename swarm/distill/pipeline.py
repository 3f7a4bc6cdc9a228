"""``swarm distill``: teacher labels -> LoRA training -> evaluation -> an adapter folder.

The pipeline is a row of stages, each writing its outputs into the run folder
(``$SWARM_HOME/distill/<specialist>/``) with a ``<stage>.done`` marker that records the stage's
key: a digest of its own options and the key of the stage before it. A re-run skips every stage
whose key still matches, so an interrupted run resumes where it stopped, and changing, say, the
learning rate re-trains without paying the teacher again (the teacher also has its own on-disk
cache, shared by all runs).

1. inputs      a JSONL of raw inputs, or the specialist's generator of synthetic ones; with a
               generator, a held-out test set from templates and sources training never sees
2. labels      the teacher (any OpenAI-compatible endpoint), or ``reference``: the generator's
               exact gold labels
3. split       train / validation (/ test, when no held-out set was generated)
4. train       LoRA with peft (:mod:`swarm.distill.training`)
5. evaluate    student, base zero-shot and base few-shot on the test set, through vLLM
6. package     ``adapters/<name>/``: weights, manifest (version bumped), training config,
               ``eval.json`` and ``eval.md``
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from swarm.distill.dataset import (
    Example,
    read_examples,
    read_json,
    split_examples,
    write_examples,
    write_json,
)
from swarm.distill.evalcard import eval_document, labelled_sources, write_eval_report
from swarm.distill.evaluation import (
    EvalReport,
    Say,
    evaluate_models,
    markdown_table,
    model_server,
    progress_bar,
)
from swarm.distill.teacher import LabelCache, Teacher, cache_path
from swarm.distill.training import TrainConfig, TrainResult, train_lora
from swarm.errors import ConfigurationError, InvalidData
from swarm.manifest import Manifest, Specialist
from swarm.serving.basemodel import packaged, resolve_base_model, served_base_name
from swarm.serving.prompting import render_messages
from swarm.settings import Settings

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class DistillOptions:
    teacher: str = "reference"
    """``reference`` (the generator's gold labels) or ``endpoint`` (SWARM_TEACHER_*)."""
    data: Path | None = None
    examples: int = 1000
    """Synthetic inputs to generate when no ``data`` is given."""
    test_examples: int = 200
    seed: int = 0
    train: TrainConfig | None = None
    """None means :class:`TrainConfig` defaults on the configured base model."""
    out_dir: Path | None = None
    """Where to package; default ``<adapters_dir>/<name>``."""
    run_dir: Path | None = None
    eval_concurrency: int = 16
    extra_train: list[Example] = field(default_factory=list)
    """Labelled examples added to training (escalations fed back by the cascade)."""
    labelled: tuple[Path, ...] = ()
    """Gold-labelled JSONL files (a corpus's train split) to train on instead of asking a
    teacher; each file's ``<file>.sources.json``, if present, is recorded in ``training.json``."""
    tests: dict[str, Path] = field(default_factory=dict)
    """Named gold-labelled test sets; the first decides packaging. With none, a test set is
    generated (no ``data``) or split off the labelled data."""


@dataclass
class DistillResult:
    run_dir: Path
    out_dir: Path | None
    labels: dict[str, Any]
    split: dict[str, int]
    training: dict[str, Any]
    evaluation: dict[str, Any]
    packaged: bool


class Pipeline:
    """One ``swarm distill`` run; :meth:`run` does every stage that is not cached."""

    def __init__(
        self, settings: Settings, specialist: Specialist, options: DistillOptions, *, say: Say
    ) -> None:
        self.settings = settings
        self.specialist = specialist
        self.options = options
        self.say = say
        self.run_dir = options.run_dir or settings.home / "distill" / specialist.name
        self.out_dir = options.out_dir or settings.adapters_dir / specialist.name
        if options.labelled:
            if options.data is not None or options.teacher == "endpoint":
                raise ConfigurationError(
                    "--labelled files carry their gold outputs: give no --data and no teacher"
                )
            self.options = options = replace(options, teacher="reference")
        if options.teacher not in ("reference", "endpoint"):
            raise ConfigurationError(
                f"unknown teacher {options.teacher!r}: use 'reference' or 'endpoint'"
            )
        if (
            options.teacher == "reference"
            and options.data is None
            and not options.labelled
            and not specialist.generate
        ):
            raise ConfigurationError(
                f"{specialist.name!r} has no built-in generator: pass --data FILE with inputs "
                "and a teacher endpoint (SWARM_TEACHER_URL)"
            )

    def run(self) -> DistillResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # The held-out set has its own key: resizing it re-evaluates without re-training.
        heldout = self._heldout()
        key = self._inputs()
        key, labels = self._labels(key)
        key, sizes = self._split(key)
        key, training = self._train(key)
        key, evaluation = self._evaluate(_key(key, heldout))
        packaged = self._package(key, evaluation)
        sizes = {**sizes, "test": len(self._test_set())}
        return DistillResult(
            self.run_dir, self.out_dir if packaged else None, labels, sizes, training,
            evaluation, packaged,
        )  # fmt: skip

    # -- stages ---------------------------------------------------------------------------

    def _inputs(self) -> str:
        o = self.options
        generated: list[Example] = []
        if o.labelled:
            source = "labelled:" + ",".join(_file_digest(path) for path in o.labelled)
        elif o.data is not None:
            source = _file_digest(o.data)
        else:
            # Generating is cheap, and keying on what came out means a changed generator
            # (new templates, say) retrains instead of reusing the old run's data.
            assert self.specialist.generate is not None
            generated = self.specialist.generate(o.examples, seed=o.seed, heldout=False)
            source = "generator:" + _digest_json([e.to_json() for e in generated])
        key = _key("inputs", self.specialist.name, source, o.seed, o.teacher)
        with self._stage("inputs", key) as done:
            if done:
                return key
            if o.labelled:
                inputs = [e for path in o.labelled for e in read_examples(path)]
                unlabelled = sum(1 for e in inputs if e.output is None)
                if unlabelled:
                    raise InvalidData(f"{unlabelled} --labelled examples have no gold 'output'")
                write_json(self.run_dir / "sources.json", labelled_sources(o.labelled))
                where = ", ".join(str(path) for path in o.labelled)
            elif o.data is not None:
                inputs = read_examples(o.data)
                where = str(o.data)
            else:
                inputs = generated
                where = "the built-in generator"
            if o.teacher == "endpoint":
                inputs = [Example(e.input, None, e.meta) for e in inputs]
            write_examples(self.run_dir / "inputs.jsonl", inputs)
            self.say(f"inputs: {len(inputs)} from {where}")
        return key

    def _heldout(self) -> str:
        """Test data from templates and sources training never sees: the named test sets, or
        (generator mode) a generated held-out set."""
        o = self.options
        heldout: list[Example] = []
        if o.tests:
            sets = {name: read_examples(path) for name, path in o.tests.items()}
            digest = _digest_json({n: [e.to_json() for e in rows] for n, rows in sets.items()})
            key = _key("tests", self.specialist.name, digest)
            with self._stage("heldout", key) as done:
                if not done:
                    (self.run_dir / "tests").mkdir(exist_ok=True)
                    for name, rows in sets.items():
                        write_examples(self.run_dir / "tests" / f"{name}.jsonl", rows)
                    (self.run_dir / "heldout.jsonl").unlink(missing_ok=True)
                    self.say("tests: " + ", ".join(f"{n} ({len(r)})" for n, r in sets.items()))
            return key
        if o.data is None and not o.labelled:
            assert self.specialist.generate is not None
            heldout = self.specialist.generate(o.test_examples, seed=o.seed + 1, heldout=True)
        digest = _digest_json([e.to_json() for e in heldout])
        key = _key("heldout", self.specialist.name, len(heldout), o.seed, digest)
        with self._stage("heldout", key) as done:
            if done:
                return key
            write_examples(self.run_dir / "heldout.jsonl", heldout)
            self.say(f"heldout: {len(heldout)} examples from unseen templates and sources")
        return key

    def _test_sets(self) -> dict[str, list[Example]]:
        """The named test sets, first the one that decides packaging."""
        if self.options.tests:
            return {n: self._named_test_set(n) for n in self.options.tests}
        return {"test": self._test_set()}

    def _named_test_set(self, name: str) -> list[Example]:
        return read_examples(self.run_dir / "tests" / f"{name}.jsonl")

    def _test_set(self) -> list[Example]:
        """The test set that decides packaging."""
        if self.options.tests:
            return self._named_test_set(next(iter(self.options.tests)))
        return _read_optional(self.run_dir / "heldout.jsonl") or read_examples(
            self.run_dir / "test.jsonl"
        )

    def _labels(self, upstream: str) -> tuple[str, dict[str, Any]]:
        o = self.options
        teacher_id = (
            "reference"
            if o.teacher == "reference"
            else f"{self.settings.teacher_url}#{self.settings.teacher_model}"
        )
        key = _key(
            "labels", upstream, teacher_id, _digest_json(self.specialist.manifest.document())
        )
        summary_path = self.run_dir / "labels.json"
        with self._stage("labels", key) as done:
            if done:
                return key, read_json(summary_path)
            inputs = read_examples(self.run_dir / "inputs.jsonl")
            if o.teacher == "reference":
                labelled = [e for e in inputs if e.output is not None]
                summary: dict[str, Any] = {
                    "teacher": "reference",
                    "labelled": len(labelled),
                    "unlabelled_dropped": len(inputs) - len(labelled),
                }
                if not labelled:
                    raise InvalidData(
                        "--teacher reference needs gold outputs, and no input has one; "
                        "use --teacher endpoint to label raw inputs"
                    )
            else:
                labelled, summary = asyncio.run(self._teacher_labels(inputs))
            write_examples(self.run_dir / "labelled.jsonl", labelled)
            write_json(summary_path, summary)
            self.say(f"labels: {_describe(summary)}")
        return key, summary

    async def _teacher_labels(self, inputs: list[Example]) -> tuple[list[Example], dict[str, Any]]:
        # The teacher sees the specialist's full prompt, few-shot included: its best effort.
        manifest = self.specialist.manifest
        prompts = [render_messages(manifest, e.input) for e in inputs]
        cache = LabelCache(cache_path(self.settings))
        bar = progress_bar(len(prompts), "teacher")
        try:
            async with Teacher.from_settings(self.settings, cache=cache) as teacher:
                labels = await teacher.label_all(
                    prompts, manifest.output_schema, on_done=lambda: bar.update(1)
                )
                stats = teacher.stats
        finally:
            bar.close()
            cache.close()
        labelled = [
            Example(e.input, label.output, e.meta)
            for e, label in zip(inputs, labels, strict=True)
            if label is not None
        ]
        summary = {"teacher": f"{self.settings.teacher_model}", "labelled": len(labelled),
                   **stats.as_dict(), "invalid_reasons": stats.invalid_reasons}  # fmt: skip
        if not labelled:
            raise InvalidData("the teacher produced no valid label; see invalid_reasons above")
        return labelled, summary

    def _split(self, upstream: str) -> tuple[str, dict[str, int]]:
        o = self.options
        extra = _digest_json([e.to_json() for e in o.extra_train]) if o.extra_train else ""
        # The test set is generated or given apart, not split off.
        held_out = bool(o.tests) or (o.data is None and not o.labelled)
        key = _key("split", upstream, o.seed, extra, held_out)
        with self._stage("split", key) as done:
            if done:
                return key, read_json(self.run_dir / "split.json")
            labelled = read_examples(self.run_dir / "labelled.jsonl")
            test_share = 0.0 if held_out else 0.15
            split = split_examples(labelled, validation=0.05, test=test_share, seed=o.seed)
            train = split.train + list(o.extra_train)
            if not train or not (held_out or split.test):
                raise InvalidData(
                    f"too few labelled examples ({len(labelled)}) to split into train and test"
                )
            for name, rows in (("train", train), ("validation", split.validation),
                               ("test", split.test)):  # fmt: skip
                write_examples(self.run_dir / f"{name}.jsonl", rows)
            sizes = {"train": len(train), "validation": len(split.validation),
                     "extra_train": len(o.extra_train)}  # fmt: skip
            write_json(self.run_dir / "split.json", sizes)
            self.say(f"split: {_describe(sizes)}")
        return key, sizes

    def train_config(self) -> TrainConfig:
        base = resolve_base_model(self.settings, prepare=True)
        config = self.options.train or TrainConfig(base_model=base)
        return replace(config, base_model=base) if not config.base_model else config

    def _train(self, upstream: str) -> tuple[str, dict[str, Any]]:
        config = self.train_config()
        settings = {k: v for k, v in config.to_json().items() if k != "base_model"}
        key = _key("train", upstream, settings, served_base_name(self.settings))
        adapter = self.run_dir / "adapter"
        with self._stage("train", key) as done:
            if done:
                return key, read_json(self.run_dir / "training.json")
            shutil.rmtree(adapter, ignore_errors=True)
            result: TrainResult = train_lora(
                config,
                self.specialist.manifest.without_few_shot(),
                read_examples(self.run_dir / "train.jsonl"),
                _read_optional(self.run_dir / "validation.jsonl"),
                adapter,
                progress=self.say,
            )
            shutil.rmtree(adapter / "checkpoints", ignore_errors=True)
            (adapter / "README.md").unlink(missing_ok=True)
            _portable_config(adapter / "adapter_config.json", self.settings)
            training = {"config": {**config.to_json(), "base_model": served_base_name(
                self.settings)}, "result": result.__dict__}  # fmt: skip
            if (self.run_dir / "sources.json").is_file():
                training["sources"] = read_json(self.run_dir / "sources.json")["sources"]
            write_json(self.run_dir / "training.json", training)
            self.say(
                f"train: {result.steps} steps in {result.seconds / 60:.1f} min on "
                f"{result.device}, loss {result.train_loss} (validation {result.validation_loss})"
            )
        return key, training

    def _evaluate(self, upstream: str) -> tuple[str, dict[str, Any]]:
        current = self._current_adapter()
        key = _key(
            "evaluate", upstream, _file_digest(current / ADAPTER_FILES[1]) if current else ""
        )
        with self._stage("evaluate", key) as done:
            if done:
                return key, read_json(self.run_dir / "eval.json")
            sets = self._test_sets()
            results: dict[str, dict[str, EvalReport]] = {}
            with model_server(self.settings, self.say) as url:
                for name, test in sets.items():
                    results[name] = asyncio.run(self._eval_all(url, test, f"distill-{key[:12]}"))
                    self.say(f"evaluate {name}:\n" + markdown_table(results[name]))
            first = next(iter(results))
            evaluation = write_eval_report(self.run_dir, self.specialist, results[first])
            if self.options.tests:
                evaluation["set"] = first
                evaluation["sets"] = {
                    name: {
                        **eval_document(self.specialist, reports),
                        "sources": labelled_sources((self.options.tests[name],))["sources"],
                    }
                    for name, reports in results.items()
                }
                write_json(self.run_dir / "eval.json", evaluation)
                (self.run_dir / "eval.md").write_text(
                    "\n".join(
                        f"## {name}\n\n{markdown_table(reports)}"
                        for name, reports in results.items()
                    ),
                    encoding="utf-8",
                )
        return key, evaluation

    async def _eval_all(self, url: str, test: list[Example], lora: str) -> dict[str, EvalReport]:
        s = self.specialist
        base = served_base_name(self.settings)
        runs = {
            "student": (lora, s.manifest.without_few_shot()),
            "base_zero_shot": (base, s.manifest.without_few_shot()),
            "base_few_shot": (base, s.manifest),
        }
        adapters = {lora: self.run_dir / "adapter"}
        current = self._current_adapter()
        if current is not None:
            # The version being replaced, on the same test set: a new one must do as well.
            shipped = yaml.safe_load((current / "specialist.yaml").read_text()) or {}
            manifest = Manifest.model_validate(
                {**s.manifest.without_few_shot().document(), **shipped}
            )
            runs["current"] = (f"{lora}-current", manifest)
            adapters[f"{lora}-current"] = current
        return await evaluate_models(
            self.settings, url, s, test, runs, adapters=adapters,
            concurrency=self.options.eval_concurrency,
        )  # fmt: skip

    def _current_adapter(self) -> Path | None:
        """The packaged adapter this run would replace, when it holds other weights."""
        folder = self.out_dir
        if not all((folder / f).is_file() for f in (*ADAPTER_FILES, "specialist.yaml")):
            return None
        new = self.run_dir / "adapter" / ADAPTER_FILES[1]
        if new.is_file() and new.read_bytes() == (folder / ADAPTER_FILES[1]).read_bytes():
            return None
        return folder

    def _package(self, upstream: str, evaluation: dict[str, Any]) -> bool:
        student = evaluation["student"]["score"]
        current = (evaluation.get("current") or {}).get("score")
        if current is not None and student < current:
            self.say(
                f"package: not packaged; the new student scores {student:.3f}, below the "
                f"current version's {current:.3f} in {self.out_dir}"
            )
            return False
        self.out_dir.mkdir(parents=True, exist_ok=True)
        adapter = self.run_dir / "adapter"
        if all((self.out_dir / f).exists() for f in ADAPTER_FILES) and all(
            (self.out_dir / f).read_bytes() == (adapter / f).read_bytes() for f in ADAPTER_FILES
        ):
            self.say(f"package: {self.out_dir} already holds these weights")
            return True
        served = self.specialist.manifest.without_few_shot()
        manifest = served.model_copy(
            update={
                "version": bump_version(_current_version(self.out_dir) or served.version),
                # The base it was trained on, which the registry checks against the served one.
                "base_model": served_base_name(self.settings),
            }
        )
        for file in ADAPTER_FILES:
            shutil.copyfile(adapter / file, self.out_dir / file)
        write_json(self.out_dir / "training.json", read_json(self.run_dir / "training.json"))
        write_json(self.out_dir / "eval.json", evaluation)
        shutil.copyfile(self.run_dir / "eval.md", self.out_dir / "eval.md")
        # The manifest goes last: the registry treats a folder as changed when it changes.
        (self.out_dir / "specialist.yaml").write_text(
            yaml.safe_dump(manifest.document(), sort_keys=False, allow_unicode=True, width=100)
        )
        self.say(f"package: {self.out_dir} (version {manifest.version})")
        return True

    @contextlib.contextmanager
    def _stage(self, name: str, key: str) -> Iterator[bool]:
        """Yields True when the stage is cached; marks it done when its body returns."""
        marker = self.run_dir / f"{name}.done"
        with contextlib.suppress(OSError, ValueError):
            if json.loads(marker.read_text()).get("key") == key:
                self.say(f"{name}: cached")
                yield True
                return
        marker.unlink(missing_ok=True)
        started = time.monotonic()
        yield False
        marker.write_text(json.dumps({"key": key, "seconds": round(time.monotonic() - started, 1)}))


def bump_version(version: str) -> str:
    """0.1.0 -> 0.2.0: a new distilled version is a minor release of the specialist."""
    parts = [int(p) for p in str(version).split(".")[:3]] + [0, 0, 0]
    return f"{parts[0]}.{parts[1] + 1}.0"


def _current_version(folder: Path) -> str | None:
    with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
        return str(yaml.safe_load((folder / "specialist.yaml").read_text())["version"])
    return None


def _portable_config(config_path: Path, settings: Settings) -> None:
    """Name the base by its public id, not this machine's path, so the folder travels; and
    sort ``target_modules``, which PEFT writes in a set's order, so retraining the same
    adapter leaves the file the same."""
    config = read_json(config_path)
    base = packaged(settings)
    if base is not None:
        config["base_model_name_or_path"] = base.upstream_id
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    write_json(config_path, config)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _digest_json(value: Any) -> str:
    return _key(value)[:16]


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InvalidData(f"cannot read {path}: {exc.strerror or exc}") from exc


def _read_optional(path: Path) -> list[Example]:
    if not path.exists() or not path.read_text().strip():
        return []
    return read_examples(path)


def _describe(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in summary.items() if not isinstance(v, dict))
