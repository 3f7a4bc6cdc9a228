"""The specialist manifest: ``adapters/<name>/specialist.yaml``.

A manifest says what a specialist does (the planner reads ``description``), what it takes and
returns (JSON schemas), how to prompt it, how to decode, and when to escalate. Unknown keys are
rejected so that a typo never silently changes behaviour.

Versions are dotted numbers (``1``, ``1.2``, ``1.2.3``) compared numerically through
:attr:`Manifest.version_key`, so ``1.10`` is newer than ``1.9``. They are kept as strings: YAML
would read an unquoted ``1.10`` as the float 1.1, so a float is refused and must be quoted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from swarm.errors import InvalidAdapter

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
"""Also a path guard: vLLM 0.32's filesystem resolver joins the name onto its directory."""
VERSION_PATTERN = re.compile(r"^\d+(\.\d+){0,2}$")
MANIFEST_FILE = "specialist.yaml"


class Strict(BaseModel):
    """Frozen, and unknown keys are errors: a misspelt key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Example(Strict):
    """One few-shot example; both halves are checked against the manifest's schemas."""

    input: dict[str, Any]
    output: Any


class Decoding(Strict):
    """Sampling parameters for every call to this specialist."""

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=8192)
    seed: int | None = None


class Escalation(Strict):
    """When a step goes to the teacher instead (the cascade)."""

    on_invalid_output: bool = True
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    max_input_chars: int | None = Field(None, ge=1)


class Manifest(Strict):
    """A validated ``specialist.yaml``."""

    name: str
    version: str = Field(
        description="Dotted numeric version: 1, 1.2 or 1.2.3 (an integer is fine too)."
    )
    description: str = Field(min_length=1)
    base_model: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    system_prompt: str = Field(min_length=1)
    few_shot: list[Example] = Field(default_factory=list)
    decoding: Decoding = Field(default_factory=Decoding)
    escalation: Escalation = Field(default_factory=Escalation)
    keywords: list[str] = Field(default_factory=list, description="Words the rule planner matches.")
    handoff: dict[str, str] = Field(
        default_factory=dict,
        description="Next specialist's input field -> this specialist's output field.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(f"name {value!r} must match {NAME_PATTERN.pattern}")
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: object) -> str:
        if isinstance(value, float):
            raise ValueError(
                f'version {value!r} was read as a number; quote it (version: "1.10") so '
                "YAML keeps every digit"
            )
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"version {value!r} must be dotted numbers like 1, 1.2 or 1.2.3")
        text = str(value)
        if not VERSION_PATTERN.fullmatch(text):
            raise ValueError(f"version {text!r} must be dotted numbers like 1, 1.2 or 1.2.3")
        return text

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        if value.get("type") != "object":
            raise ValueError('must describe a JSON object ("type": "object")')
        return value

    @model_validator(mode="after")
    def _examples_match(self) -> Manifest:
        for i, example in enumerate(self.few_shot):
            for half, value, schema in (
                ("input", example.input, self.input_schema),
                ("output", example.output, self.output_schema),
            ):
                try:
                    jsonschema.validate(value, schema)
                except jsonschema.ValidationError as exc:
                    raise ValueError(
                        f"few_shot[{i}].{half} does not match {half}_schema: {exc.message}"
                    ) from exc
        return self

    @property
    def version_key(self) -> tuple[int, ...]:
        """(major, minor, patch) for ordering: ``1.10`` > ``1.9``, and ``1`` == ``1.0``."""
        parts = [int(part) for part in self.version.split(".")]
        return (*parts, *[0] * (3 - len(parts)))


def load_manifest(folder: Path) -> Manifest:
    """Read and validate ``folder/specialist.yaml``; InvalidAdapter says what is wrong."""
    name = folder.name
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise InvalidAdapter(name, f"no {MANIFEST_FILE} in {folder}")
    try:
        text = path.read_text(encoding="utf-8")
        # An alias repeats a node by reference: a few hundred bytes of them expand to
        # gigabytes once the manifest is copied or serialised. A manifest has no use for one.
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, yaml.SafeLoader)):
            raise InvalidAdapter(name, f"{MANIFEST_FILE} uses YAML aliases (*name); write the "
                                 "values out")  # fmt: skip
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidAdapter(name, f"{MANIFEST_FILE} is not valid YAML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidAdapter(name, f"{MANIFEST_FILE} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidAdapter(name, f"{MANIFEST_FILE} must be a mapping")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown key {first['loc'][-1]!r} (check its spelling)"
        raise InvalidAdapter(name, f"{MANIFEST_FILE}: {where}: {message}") from exc
    if manifest.name != name:
        raise InvalidAdapter(name, f"manifest name {manifest.name!r} differs from the folder name")
    return manifest
