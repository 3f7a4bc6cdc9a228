"""``entities``: text in, the named entities in it out, each as ``{text, type}``."""

from __future__ import annotations

from typing import Any

from specialists.builtin.definition import TEXT_INPUT, Definition

ENTITY_TYPES = ("PERSON", "ORGANIZATION", "LOCATION", "DATE", "PRODUCT", "EVENT", "MONEY")


def check_entities(input_: dict[str, Any], output: dict[str, Any]) -> str | None:
    """Each entity must be quoted from the input text."""
    text = str(input_.get("text", ""))
    for entity in output.get("entities", []):
        value = str(entity.get("text", ""))
        if value not in text:
            return f"entity {value!r} does not occur in the input text"
    return None


DEFINITION = Definition(
    name="entities",
    description=(
        "Extracts named entities (people, organizations, locations, dates, products, events, "
        "money amounts) from text as JSON. Input: text. Output: entities, each {text, type}."
    ),
    keywords=("entities", "entity", "extract", "ner", "names", "organizations", "locations"),
    input_schema=TEXT_INPUT,
    output_schema={
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "minLength": 1},
                        "type": {"type": "string", "enum": list(ENTITY_TYPES)},
                    },
                    "required": ["text", "type"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["entities"],
        "additionalProperties": False,
    },
    system_prompt=(
        "You extract named entities. List every person, organization, location, date, product, "
        "event and money amount mentioned in the text, quoting each exactly as written. Reply as "
        'JSON: {"entities": [{"text": "...", "type": "..."}]}.'
    ),
    few_shot=(
        {
            "input": {"text": "Acme Corp opened an office in Berlin on 3 May 2024."},
            "output": {
                "entities": [
                    {"text": "Acme Corp", "type": "ORGANIZATION"},
                    {"text": "Berlin", "type": "LOCATION"},
                    {"text": "3 May 2024", "type": "DATE"},
                ]
            },
        },
    ),
    decoding={"temperature": 0.0, "max_tokens": 256},
    check=check_entities,
)
