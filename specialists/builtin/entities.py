"""``entities``: text in, the named entities in it out, each as ``{text, type}``."""

from __future__ import annotations

import re
from typing import Any

from specialists.builtin.definition import (
    MONTH,
    TEXT_INPUT,
    WEEKDAY,
    Definition,
    as_written,
    quoted_items,
)

ENTITY_TYPES = ("PERSON", "ORGANIZATION", "LOCATION", "DATE", "PRODUCT", "EVENT", "MONEY")


def check_entities(input_: dict[str, Any], output: dict[str, Any]) -> str | None:
    """Each entity must be quoted from the input text."""
    text = str(input_.get("text", ""))
    for entity in output.get("entities", []):
        value = str(entity.get("text", ""))
        if value not in text:
            return f"entity {value!r} does not occur in the input text"
    return None


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
LANGUAGES = frozenset(
    ("English", "French", "German", "Spanish", "Italian", "Portuguese", "Dutch", "Polish",
     "Swedish", "Danish", "Finnish", "Czech", "Romanian", "Hungarian", "Greek", "Turkish",
     "Russian", "Arabic", "Hebrew", "Hindi", "Chinese", "Mandarin", "Cantonese", "Japanese",
     "Korean", "Latin")
)  # fmt: skip
"""Capitalised words that follow "in" ("in English") without being places."""
ARTICLES = frozenset({"The", "A", "An"})
IN_NAME = re.compile(r"(?<![\w'\u2019-])in (?=[^\W\d_])")
NAME_WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")
"""A word of a name: a letter first, then letters, digits, apostrophes and hyphens."""
LOWER_WORD = re.compile(r"\b[a-z]{4,}\b")
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


def places_after_in(text: str) -> list[tuple[int, int]]:
    """The capitalised names right after "in" ("died in Reunion", "500 jobs in Sainte Guy"),
    as (start, end): in English such a name is a place.

    A run of capitalised words is taken up to the first word that is not one; a run with a
    calendar word, an article first, or a language alone is no place. Text in title case
    ("Flooding In Lagos Forces Organisers Out", no lower-case word of four letters or more)
    capitalises words that are no names, so it has none.
    """
    if not LOWER_WORD.search(text):
        return []
    found = []
    for match in IN_NAME.finditer(text):
        start = end = match.end()
        while (word := NAME_WORD.match(text, end)) and word.group()[0].isupper():
            end = word.end()
            if not text.startswith(" ", end):
                break
            end += 1
        value = text[start:end].rstrip(" ").removesuffix("'s").removesuffix("\u2019s")
        words = value.split()
        if not words or words[0] in ARTICLES or value in LANGUAGES:
            continue
        if any(DATE_WORD.fullmatch(word) for word in words):
            continue
        found.append((start, start + len(value)))
    return found


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


def _widened(text: str, value: str, kind: str, recognised: list[tuple[int, int, str]]) -> str:
    """A date or amount cut short ("April 03" of "April 03, 2025") as the whole one written;
    the stop after an abbreviated month stays the sentence's unless the model took it."""
    for start, end, found in recognised:
        whole = text[start:end]
        if whole.endswith(".") and not value.endswith("."):
            whole = whole[:-1]
        if found == kind and value in whole:
            return whole
    return value


def finish_entities(input_: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    """The model's entities repaired and completed.

    - Each entity's text is anchored to the input (:func:`_anchor`); one the input does not
      hold is dropped, as pii drops a span it cannot find: a miscopied name is no answer.
    - Types are corrected, and non-entities dropped, where the form settles it
      (:func:`retype`). A date or amount cut short is widened to the whole one written, and a
      product is named without its article ("the Pixel 9" is the "Pixel 9"), as the gold
      names them. A value is listed at most as often as it occurs in the input.
    - Written dates and currency amounts the model missed are added (:func:`recognise`), then
      the names after "in" (:func:`places_after_in`) as places, each unless it overlaps an
      entity already listed.
    """
    text = str(input_.get("text", ""))
    entities = output.get("entities")
    if not quoted_items(entities):
        return output
    cased = any(c.isupper() for c in text)
    recognised = recognise(text)
    kept: list[dict[str, str]] = []
    for entity in entities:
        value = _anchor(text, entity["text"])
        kind = retype(value, entity["type"], cased=cased) if value else None
        if kind is None:
            continue
        if kind in ("DATE", "MONEY"):
            value = _widened(text, value, kind, recognised)
        elif kind == "PRODUCT" and value[:4] in ("the ", "The ") and len(value) > 4:
            value = value[4:]
        if sum(e["text"] == value for e in kept) < text.count(value):
            kept.append({"text": value, "type": kind})
    covered = [span for e in kept for span in _occurrences(text, e["text"])]
    places = [(start, end, "LOCATION") for start, end in places_after_in(text)] if cased else []
    for start, end, kind in recognised + places:
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
