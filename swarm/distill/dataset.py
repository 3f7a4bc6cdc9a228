"""Labelled examples for distillation and evaluation: JSONL files and the train/val/test split.

One example is one JSON object per line: ``{"input": {...}, "output": {...}, "meta": {...}}``.
``output`` is the gold label (absent until a teacher labels the input); ``meta`` carries what a
scorer may need beyond the input, such as the rows of a SQL example's database. A line without
an ``input`` key is taken whole as the input, so a file of raw inputs is just one object a line.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm.errors import InvalidData


@dataclass(frozen=True)
class Example:
    input: dict[str, Any]
    output: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"input": self.input}
        if self.output is not None:
            row["output"] = self.output
        if self.meta:
            row["meta"] = self.meta
        return row

    @classmethod
    def from_json(cls, row: Any, *, where: str = "row") -> Example:
        if not isinstance(row, dict):
            raise InvalidData(f"{where}: expected a JSON object, got {type(row).__name__}")
        if "input" not in row:
            return cls(input=row)
        value, output, meta = row["input"], row.get("output"), row.get("meta") or {}
        if isinstance(value, str):
            value = {"text": value}
        if not isinstance(value, dict):
            raise InvalidData(f"{where}: 'input' must be an object or a string")
        if output is not None and not isinstance(output, dict):
            raise InvalidData(f"{where}: 'output' must be an object")
        if not isinstance(meta, dict):
            raise InvalidData(f"{where}: 'meta' must be an object")
        return cls(input=value, output=output, meta=meta)


@dataclass(frozen=True)
class Split:
    train: list[Example]
    validation: list[Example]
    test: list[Example]

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def read_examples(path: Path) -> list[Example]:
    """Every example in a JSONL file; a bad line is a :class:`InvalidData` naming its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidData(f"cannot read {path}: {exc.strerror or exc}") from exc
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidData(f"{path}:{number}: not JSON ({exc.msg})") from exc
        examples.append(Example.from_json(row, where=f"{path}:{number}"))
    if not examples:
        raise InvalidData(f"{path} holds no examples")
    return examples


def write_examples(path: Path, examples: Iterable[Example]) -> None:
    """Write atomically, so an interrupted run never leaves half a file behind as cached."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    partial.replace(path)


def split_examples(
    examples: Sequence[Example], *, validation: float = 0.1, test: float = 0.1, seed: int = 0
) -> Split:
    """A seeded random split; validation and test get at least one example when there are 3+."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    n_test = max(1, round(n * test)) if n >= 3 and test > 0 else 0
    n_val = max(1, round(n * validation)) if n >= 3 and validation > 0 else 0
    return Split(
        train=shuffled[n_test + n_val :],
        validation=shuffled[n_test : n_test + n_val],
        test=shuffled[:n_test],
    )


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file's object (an empty one if the file holds another value)."""
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def write_json(path: Path, value: Any) -> None:
    """``value`` as indented JSON, non-ASCII kept, with a final newline."""
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
