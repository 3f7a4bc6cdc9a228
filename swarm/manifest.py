"""The specialist manifest, ``adapters/<name>/specialist.yaml``, and :class:`Specialist`.

A manifest says what a specialist does (the planner reads ``description``), what it takes and
returns (JSON schemas), how to prompt it, how to decode, and when to escalate. Unknown keys are
rejected so that a typo never silently changes behaviour. It is the one manifest type: the
registry validates a folder into it, the catalog's records carry it, and the built-in
specialists are written as one.

A :class:`Specialist` is a manifest with the code that goes with it in this process: the rules
beyond the JSON schema (finish, check) and, for distillation, a generator and a scorer.

Versions are dotted numbers (``1``, ``1.2``, ``1.2.3``) compared numerically through
:attr:`Manifest.version_key`, so ``1.10`` is newer than ``1.9``. They are kept as strings: YAML
would read an unquoted ``1.10`` as the float 1.1, so a float is refused and must be quoted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
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

Check = Callable[[dict[str, Any], dict[str, Any]], str | None]
"""``check(step_input, output)``: None if the output may be handed on, else why not."""
Finish = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
"""``finish(step_input, output)``: the output with deterministic repairs applied."""


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

    def before(self, step_input: dict[str, Any]) -> str | None:
        """Why the input goes straight to the teacher, if it does."""
        if self.max_input_chars is None:
            return None
        size = sum(
            len(v) if isinstance(v, str) else len(json.dumps(v, ensure_ascii=False))
            for v in step_input.values()
        )
        if size > self.max_input_chars:
            return f"input is {size} characters, over max_input_chars={self.max_input_chars}"
        return None

    def after_valid(self, score: float | None) -> str | None:
        """Why a valid student answer still goes to the teacher, if it does."""
        if self.min_confidence is None or score is None or score >= self.min_confidence:
            return None
        return f"confidence {score:.3f} below min_confidence={self.min_confidence}"


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
    order: int | None = Field(
        None,
        description="Where the rule planner puts this specialist in a chain it makes, lower "
        "first (the built-ins: pii 0, entities 1, sql 2); unset: after them.",
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

    def without_few_shot(self) -> Manifest:
        """The manifest a student is trained and served with: the same prompt, no examples."""
        return self.model_copy(update={"few_shot": []})

    def document(self) -> dict[str, Any]:
        """The manifest as ``specialist.yaml`` holds it: JSON types, unset options left out."""
        return self.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class Specialist:
    """A specialist in code: its manifest, and the functions that go with it here."""

    manifest: Manifest
    check: Check | None = None
    """Rules beyond the output schema."""
    finish: Finish | None = None
    """Deterministic repairs of the model's output, applied before ``check``."""
    scorer: Callable[..., dict[str, Any]] | None = None
    """For ``swarm distill`` and ``swarm eval``: ``scorer(examples, predictions)``, the task
    metric with its parts; None scores by exact match."""
    metric: str = "exact_match"
    """Which of the scorer's figures is the headline."""
    generate: Callable[..., list[Any]] | None = None
    """``generate(n, *, seed, heldout)``: synthetic labelled examples, for a specialist that has
    a generator."""

    @property
    def name(self) -> str:
        return self.manifest.name


def load_manifest(folder: Path, name: str | None = None) -> Manifest:
    """Read and validate ``folder/specialist.yaml``, the manifest of the specialist ``name``
    (default: the folder's name); InvalidAdapter says what is wrong."""
    name = name or folder.name
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
        raise InvalidAdapter(
            name,
            f"manifest name {manifest.name!r} differs from the folder name"
            if name == folder.name
            else f"{path} is the manifest of {manifest.name!r}, not of {name!r}",
        )
    return manifest
