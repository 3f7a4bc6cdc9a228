"""JSONL examples and the split."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.distill.dataset import Example, read_examples, split_examples, write_examples
from swarm.errors import InvalidData


def test_round_trip_and_raw_inputs(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    examples = [
        Example({"text": "a"}, {"spans": []}, {"template": "t"}),
        Example({"text": "b"}),
    ]
    write_examples(path, examples)
    assert read_examples(path) == examples
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"text": "just an input"}\n\n{"input": "a string input"}\n')
    assert read_examples(raw) == [
        Example({"text": "just an input"}),
        Example({"text": "a string input"}),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"input": {"text": "a"}}\nnot json\n', r"data.jsonl:2: not JSON"),
        ("[1, 2]\n", r"data.jsonl:1: expected a JSON object"),
        ('{"input": {"text": "a"}, "output": "x"}\n', r"'output' must be an object"),
        ("\n\n", r"holds no examples"),
    ],
)
def test_bad_files_name_the_line_at_fault(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(InvalidData, match=message):
        read_examples(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match="cannot read"):
        read_examples(tmp_path / "nope.jsonl")


def test_split_is_seeded_disjoint_and_complete() -> None:
    examples = [Example({"text": str(i)}) for i in range(100)]
    split = split_examples(examples, validation=0.1, test=0.2, seed=7)
    assert split.sizes() == {"train": 70, "validation": 10, "test": 20}
    seen = [e.input["text"] for e in split.train + split.validation + split.test]
    assert sorted(seen) == sorted(e.input["text"] for e in examples)
    assert split_examples(examples, validation=0.1, test=0.2, seed=7) == split
    assert split_examples(examples, validation=0.1, test=0.2, seed=8) != split
    tiny = split_examples(examples[:3], validation=0.1, test=0.1)
    assert tiny.sizes() == {"train": 1, "validation": 1, "test": 1}
