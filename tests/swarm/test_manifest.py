"""The manifest contract: what a valid specialist.yaml is, and how a bad one is explained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from specialists.builtin import BUILTINS
from swarm.errors import InvalidAdapter
from swarm.manifest import load_manifest

from adapterfactory import builtin_manifest, write_manifest

ADAPTERS = Path(__file__).parents[2] / "adapters"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_shipped_manifests_match_the_builtin_definitions(name: str) -> None:
    """Same prompt and schemas as the code; a distilled folder drops the few-shot examples."""
    shipped = load_manifest(ADAPTERS / name)
    builtin = load_manifest(
        write_manifest(
            Path("/tmp") / "swarm-manifest-check" / name, BUILTINS[name].manifest.document()
        )
    )
    varying = {"version", "few_shot"}
    assert shipped.model_dump(mode="json", exclude_defaults=True, exclude=varying) == (
        builtin.model_dump(mode="json", exclude_defaults=True, exclude=varying)
    )
    if (ADAPTERS / name / "adapter_model.safetensors").exists():
        assert shipped.few_shot == [] and shipped.version_key > builtin.version_key
    else:
        assert shipped == builtin


def test_a_valid_manifest_loads(tmp_path: Path) -> None:
    manifest = load_manifest(write_manifest(tmp_path / "notes", builtin_manifest("notes")))
    assert manifest.name == "notes" and manifest.version_key == (0, 1, 0)
    assert manifest.decoding.max_tokens == 256


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": "other"}, "manifest name 'other' differs from the folder name"),
        ({"version": "one"}, "version 'one' must be dotted numbers"),
        ({"colour": "blue"}, "colour: unknown key 'colour'"),
        ({"decoding": {"temprature": 0.2}}, "decoding.temprature: unknown key 'temprature'"),
        ({"version": 1.10}, "version 1.1 was read as a number; quote it"),
        ({"version": "1.2.3.4"}, "version '1.2.3.4' must be dotted numbers"),
        ({"name": "Notes"}, "name 'Notes' must match"),
        ({"base_model": None}, "base_model: Input should be a valid string"),
        ({"system_prompt": ""}, "system_prompt: String should have at least 1 character"),
        ({"description": ""}, "description: String should have at least 1 character"),
        (
            {"output_schema": {"type": "object", "properties": 5}},
            "output_schema: not a valid JSON Schema",
        ),
        ({"input_schema": {"type": "string"}}, "input_schema: must describe a JSON object"),
        (
            {"few_shot": [{"input": {"text": "x"}, "output": {"wrong": 1}}]},
            "few_shot[0].output does not match output_schema",
        ),
        (
            {"few_shot": [{"input": {}, "output": {"entities": []}}]},
            "few_shot[0].input does not match input_schema",
        ),
        (
            {"escalation": {"min_confidence": 1.5}},
            "escalation.min_confidence: Input should be less than or equal to 1",
        ),
        ({"decoding": {"temperature": 9}}, "decoding.temperature: Input should be less than"),
    ],
)
def test_each_bad_manifest_is_rejected_with_its_reason(
    tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    folder = write_manifest(tmp_path / "notes", builtin_manifest("notes", **change))
    with pytest.raises(InvalidAdapter) as info:
        load_manifest(folder)
    assert reason in info.value.reason, info.value.reason


def test_versions_compare_numerically(tmp_path: Path) -> None:
    def key(version: Any) -> tuple[int, ...]:
        folder = write_manifest(tmp_path / "notes", builtin_manifest("notes", version=version))
        return load_manifest(folder).version_key

    assert key("1.10") > key("1.9") > key(1) == key("1.0") == key("1.0.0")
    assert key(2) > key("1.99.99")


def test_missing_and_unparseable_manifests(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidAdapter, match=r"no specialist\.yaml"):
        load_manifest(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "specialist.yaml").write_text("name: [unclosed")
    with pytest.raises(InvalidAdapter, match="not valid YAML"):
        load_manifest(tmp_path / "broken")
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "specialist.yaml").write_text("- name: list")
    with pytest.raises(InvalidAdapter, match="must be a mapping"):
        load_manifest(tmp_path / "list")
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "specialist.yaml").write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(InvalidAdapter, match="cannot be read"):
        load_manifest(tmp_path / "binary")


def test_the_worked_example_in_adapters_readme_is_valid(tmp_path: Path) -> None:
    readme = (ADAPTERS / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    folder = tmp_path / "invoices"
    folder.mkdir()
    (folder / "specialist.yaml").write_text(example)
    manifest = load_manifest(folder)
    assert manifest.escalation.min_confidence == 0.8 and manifest.handoff == {"text": "vendor"}


def test_a_folder_of_another_name_holds_the_manifest_it_is_asked_for(tmp_path: Path) -> None:
    """``swarm eval --adapter runs/gemma-entities`` reads an entities manifest from a folder
    named otherwise; asked for another specialist, it says whose manifest it found."""
    folder = write_manifest(tmp_path / "gemma-entities", builtin_manifest("entities"))
    assert load_manifest(folder, "entities").name == "entities"
    with pytest.raises(InvalidAdapter, match="is the manifest of 'entities', not of 'sql'"):
        load_manifest(folder, "sql")
    with pytest.raises(InvalidAdapter, match="differs from the folder name"):
        load_manifest(folder)
