"""The eval card: ``eval.json`` and ``eval.md`` of an adapter folder.

``eval.json`` holds the specialist's metric and, for each model evaluated (student, base
zero-shot, base few-shot, the version replaced), its score with a 95% interval, latency, JSON
validity and the metric's parts; with several named test sets, each under ``sets`` with its
sources. The registry shows its summary, and the dashboard draws it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swarm.distill.dataset import read_json, write_json
from swarm.distill.evaluation import EvalReport, markdown_table
from swarm.manifest import Specialist


def eval_document(specialist: Specialist, reports: dict[str, EvalReport]) -> dict[str, Any]:
    """``eval.json``: the metric, then each model's score, latency and details."""
    document: dict[str, Any] = {"specialist": specialist.name, "metric": specialist.metric}
    for name, report in reports.items():
        document[name] = {
            "score": report.score,
            "latency_ms_p50": report.latency_ms_p50,
            "latency_ms_p95": report.latency_ms_p95,
            "json_validity": report.json_validity,
            "check_pass": report.check_pass,
            "examples": report.examples,
            "interval_95": list(report.interval) if report.interval else None,
            "metrics": report.metrics,
        }
        if report.model_only is not None:
            document[name]["model_only"] = report.model_only
    if "student" in reports and "base_few_shot" in reports:
        base = max(reports["base_zero_shot"].score, reports["base_few_shot"].score)
        document["student_vs_best_base"] = (
            round(reports["student"].score / base, 2) if base else None
        )
    return document


def labelled_sources(paths: tuple[Path, ...]) -> dict[str, Any]:
    """What each labelled file says of its source (``<file>.sources.json``, written by
    ``swarm corpus``), in order; a file without one is named by its path alone."""
    sources: list[Any] = []
    for path in paths:
        sidecar = path.with_name(path.name + ".sources.json")
        if sidecar.is_file():
            sources.extend(read_json(sidecar)["sources"])
        else:
            sources.append({"name": path.name, "files": [str(path)], "examples": None})
    return {"sources": sources}


def write_eval_report(
    folder: Path, specialist: Specialist, reports: dict[str, EvalReport]
) -> dict[str, Any]:
    """Write ``eval.json`` and ``eval.md`` into ``folder``; returns the ``eval.json`` document."""
    document = eval_document(specialist, reports)
    write_json(folder / "eval.json", document)
    (folder / "eval.md").write_text(eval_markdown(specialist, reports), encoding="utf-8")
    return document


def add_eval_set(
    folder: Path,
    specialist: Specialist,
    name: str,
    reports: dict[str, EvalReport],
    data: Path,
) -> dict[str, Any]:
    """Add (or replace) one named test set in ``folder``'s ``eval.json`` and ``eval.md``,
    keeping the others and the headline (the first set's figures); returns the document."""
    path = folder / "eval.json"
    document = read_json(path) if path.is_file() else {}
    entry = {**eval_document(specialist, reports), **labelled_sources((data,))}
    if not document:
        document = {**eval_document(specialist, reports), "set": name}
    sets = document.setdefault("sets", {})
    if not sets and document.get("set") and document["set"] != name:
        sets[document["set"]] = {k: v for k, v in document.items() if k not in ("set", "sets")}
    sets[name] = entry
    write_json(path, document)
    notes = folder / "eval.md"
    kept = notes.read_text(encoding="utf-8") if notes.is_file() else ""
    section = f"## {name}\n\n{markdown_table(reports)}"
    heading = f"## {name}\n"
    if heading in kept:
        before, _, after = kept.partition(heading)
        rest = after.split("\n## ", 1)
        kept = before + section + ("\n## " + rest[1] if len(rest) > 1 else "")
    else:
        kept = kept.rstrip("\n") + ("\n\n" if kept else "") + section
    notes.write_text(kept, encoding="utf-8")
    return document


def eval_markdown(specialist: Specialist, reports: dict[str, EvalReport]) -> str:
    return (
        f"# `{specialist.name}` evaluation\n\nMetric: {specialist.metric}. Student: the "
        "distilled LoRA with the plain prompt. Base: the base model with the same prompt, "
        "zero-shot and with the manifest's few-shot examples."
        + (
            " Every row scores the specialist's finished output; the row 'model before finish' "
            "scores the model's own."
            if specialist.finish
            else ""
        )
        + "\n\n"
        + markdown_table(reports)
    )
