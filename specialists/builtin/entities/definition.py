"""The built-in ``entities`` specialist: its manifest, with its finish step
(:mod:`specialists.builtin.entities.finish`)."""

from __future__ import annotations

from specialists.builtin.definition import TEXT_INPUT, builtin_manifest
from specialists.builtin.entities import data
from specialists.builtin.entities.finish import ENTITY_TYPES, check_entities, finish_entities
from specialists.builtin.entities.scoring import entity_scores
from swarm.manifest import Specialist

SPECIALIST = Specialist(
    manifest=builtin_manifest(
        {
            "name": "entities",
            "description": (
                "Extracts named entities (people, organizations, locations, other names such as "
                "nationalities and events, dates, money amounts) from text as JSON. Input: text. "
                "Output: entities, each {text, type}."
            ),
            "keywords": [
                "entities",
                "entity",
                "extract",
                "ner",
                "names",
                "organizations",
                "locations",
            ],
            "input_schema": TEXT_INPUT,
            "output_schema": {
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
            "system_prompt": (
                "You extract named entities. List every person (PERSON), organization "
                "(ORGANIZATION), location (LOCATION) and other proper name such as a nationality, "
                "event or work (MISC) in the text, quoting each exactly as written. Reply as JSON: "
                '{"entities": [{"text": "...", "type": "..."}]}.'
            ),
            "few_shot": (
                {
                    "input": {"text": "Acme Corp opened an office in Berlin, the German capital."},
                    "output": {
                        "entities": [
                            {"text": "Acme Corp", "type": "ORGANIZATION"},
                            {"text": "Berlin", "type": "LOCATION"},
                            {"text": "German", "type": "MISC"},
                        ]
                    },
                },
            ),
            "decoding": {"temperature": 0.0, "max_tokens": 256},
        }
    ),
    check=check_entities,
    finish=finish_entities,
    scorer=entity_scores,
    metric="entity_f1",
    generate=data.generate,
)
