"""``entities``: text in, the named entities in it out, each as ``{text, type}``."""

from __future__ import annotations

import re
from typing import Any

from specialists.builtin.definition import TEXT_INPUT, Definition, as_written, quoted_items

ENTITY_TYPES = ("PERSON", "ORGANIZATION", "LOCATION", "DATE", "PRODUCT", "EVENT", "MONEY")


def check_entities(input_: dict[str, Any], output: dict[str, Any]) -> str | None:
    """Each entity must be quoted from the input text."""
    text = str(input_.get("text", ""))
    for entity in output.get("entities", []):
        value = str(entity.get("text", ""))
        if value not in text:
            return f"entity {value!r} does not occur in the input text"
    return None


MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?)"
)
WEEKDAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
DAY = r"\d{1,2}(?:st|nd|rd|th)?"
DATE = re.compile(
    rf"\b(?:{WEEKDAY},? )?(?:{DAY} {MONTH}(?:,? \d{{4}})?|{MONTH} {DAY}(?:,? \d{{4}})?"
    rf"|{MONTH},? \d{{4}})(?![\w])"
    r"|(?<![\w./-])(?:\d{4}-\d{2}-\d{2}|\d{1,2}([./])\d{1,2}\1\d{4})(?![\w./-])"
    rf"|\b{WEEKDAY}\b"
)
"""A written calendar date (English month and day names), an ISO or d/m/y date, or a weekday."""
DATE_WORD = re.compile(
    rf"\b(?:{MONTH}|{WEEKDAY}|spring|summer|autumn|fall|winter|today|tomorrow|yesterday|"
    r"week|month|year|decade|century|quarter|Q[1-4]|FY|H[12])",
    re.IGNORECASE,
)
"""A word without which a value without digits cannot be a date."""
AMOUNT = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?"
SCALE = r"(?: ?(?:thousand|million|billion|trillion)|(?:k|m|bn|mn)(?![\w]))?"
CURRENCY_CODE = r"(?:USD|EUR|GBP|CHF|JPY|CNY|INR|AUD|CAD|SEK|NOK|DKK|PLN|Rs\.?)"
CURRENCY_WORD = r"(?:dollars?|euros?|pounds?|yen|yuan|rupees?|francs?|kronor|kroner|zloty)"
MONEY = re.compile(
    rf"(?<![\w$€£¥₹])(?:(?:US|A|C|NZ|HK)?[$€£¥₹] ?(?:{AMOUNT}){SCALE}"
    rf"|{CURRENCY_CODE} ?(?:{AMOUNT}){SCALE}"
    rf"|(?:{AMOUNT}){SCALE} (?:{CURRENCY_WORD}|{CURRENCY_CODE}|€)"
    rf"|(?:{AMOUNT}) ?€)(?![\w])"
)
"""An amount with its currency: a symbol, an ISO code or a currency word."""
CURRENCY = re.compile(rf"[$€£¥₹]|\b(?:{CURRENCY_CODE}|{CURRENCY_WORD}|cents?)\b", re.IGNORECASE)
NAMED = ("PERSON", "ORGANIZATION", "LOCATION", "PRODUCT", "EVENT")
"""The types whose values are proper names, written with a capital letter in cased text."""


def retype(value: str, kind: str, *, cased: bool) -> str | None:
    """The model's ``kind`` for ``value``, corrected where the value's form settles it; None
    where the value is no entity at all.

    A whole written date or currency amount is a DATE or MONEY whatever the model said. A
    "money amount" without a currency is no money ("500 jobs"), a "date" with neither a digit
    nor a calendar word is no date, and a "name" without a letter is none; in ``cased`` text
    (text with capitals somewhere), a name without a capital is none either.
    """
    if MONEY.fullmatch(value):
        return "MONEY"
    if DATE.fullmatch(value):
        return "DATE"
    if kind == "MONEY" and not CURRENCY.search(value):
        return None
    if kind == "DATE" and not any(c.isdigit() for c in value) and not DATE_WORD.search(value):
        return None
    if kind in NAMED:
        if not any(c.isalpha() for c in value):
            return None
        if cased and not any(c.isupper() for c in value):
            return None
    return kind


def recognise(text: str) -> list[tuple[int, int, str]]:
    """The written dates and currency amounts in ``text``, as (start, end, type)."""
    found = [(m.start(), m.end(), "MONEY") for m in MONEY.finditer(text)]
    found += [(m.start(), m.end(), "DATE") for m in DATE.finditer(text)]
    return sorted(found)


def _anchor(text: str, value: str) -> str:
    """``value`` as the input writes it: trimmed, a doubled final stop (a name that ends a
    sentence) undone, and re-cased where only the letter case differs; "" where the input does
    not hold it."""
    value = value.strip(" \t\n,;:")
    if value.endswith(".."):
        value = value[:-1]
    return as_written(text, value)


def _occurrences(text: str, value: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(re.escape(value), text)] if value else []


def finish_entities(input_: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    """The model's entities repaired and completed.

    - Each entity's text is anchored to the input (:func:`_anchor`); one the input does not
      hold is dropped, as pii drops a span it cannot find: a miscopied name is no answer.
    - Types are corrected, and non-entities dropped, where the form settles it
      (:func:`retype`). A value is listed at most as often as it occurs in the input.
    - Written dates and currency amounts the model missed are added (:func:`recognise`),
      unless they overlap an entity it listed.
    """
    text = str(input_.get("text", ""))
    entities = output.get("entities")
    if not quoted_items(entities):
        return output
    cased = any(c.isupper() for c in text)
    kept: list[dict[str, str]] = []
    for entity in entities:
        value = _anchor(text, entity["text"])
        kind = retype(value, entity["type"], cased=cased) if value else None
        if kind is None:
            continue
        if sum(e["text"] == value for e in kept) < text.count(value):
            kept.append({"text": value, "type": kind})
    covered = [span for e in kept for span in _occurrences(text, e["text"])]
    for start, end, kind in recognise(text):
        if not any(start < b and a < end for a, b in covered):
            kept.append({"text": text[start:end], "type": kind})
            covered.append((start, end))
    return {**output, "entities": kept}


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
    finish=finish_entities,
)
