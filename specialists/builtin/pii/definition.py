"""The built-in ``pii`` specialist: its manifest, with its finish step
(:mod:`specialists.builtin.pii.finish`)."""

from __future__ import annotations

from specialists.builtin.definition import TEXT_INPUT, builtin_manifest
from specialists.builtin.pii import data
from specialists.builtin.pii.finish import PII_TYPES, check_spans, finish_spans
from specialists.builtin.pii.scoring import pii_scores
from swarm.manifest import Specialist

SPECIALIST = Specialist(
    manifest=builtin_manifest(
        {
            "name": "pii",
            "description": (
                "Finds personal data (names, emails, phone numbers, addresses, card and account "
                "numbers, IP addresses, birth dates) in text and redacts it. Input: text. Output: "
                "redacted_text with each item replaced by [TYPE], and the spans found."
            ),
            "keywords": [
                "pii",
                "redact",
                "anonymize",
                "anonymise",
                "personal",
                "privacy",
                "gdpr",
                "mask",
            ],
            "input_schema": TEXT_INPUT,
            "output_schema": {
                "type": "object",
                "properties": {
                    "redacted_text": {"type": "string"},
                    "spans": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "text": {"type": "string"},
                                "type": {"type": "string", "enum": list(PII_TYPES)},
                            },
                            "required": ["text", "type"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["redacted_text", "spans"],
                "additionalProperties": False,
            },
            "system_prompt": (
                "You redact personal data. Find every person name, email, phone number, postal "
                "address, credit card number, IBAN, social security number, IP address and date of "
                "birth in the text. Reply as JSON with redacted_text (the text with each item "
                "replaced by its type in brackets, e.g. [PERSON], [EMAIL]) and spans (each item's "
                "exact text and type)."
            ),
            "few_shot": (
                {
                    "input": {"text": "Contact Maria Lopez at maria.lopez@example.com."},
                    "output": {
                        "redacted_text": "Contact [PERSON] at [EMAIL].",
                        "spans": [
                            {"text": "Maria Lopez", "type": "PERSON"},
                            {"text": "maria.lopez@example.com", "type": "EMAIL"},
                        ],
                    },
                },
            ),
            "decoding": {"temperature": 0.0, "max_tokens": 256},
            "handoff": {"text": "redacted_text"},
        }
    ),
    check=check_spans,
    finish=finish_spans,
    scorer=pii_scores,
    metric="span_f1",
    generate=data.generate,
)
