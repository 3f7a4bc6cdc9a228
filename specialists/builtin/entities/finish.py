"""``entities``: text in, the named entities in it out, each as ``{text, type}``."""

from __future__ import annotations

import re
from typing import Any

from specialists.builtin.text import (
    MONTH,
    WEEKDAY,
    as_written,
    pattern,
    quoted_items,
)

ENTITY_TYPES = (
    "PERSON", "ORGANIZATION", "LOCATION", "MISC", "DATE", "MONEY", "PRODUCT", "EVENT"
)  # fmt: skip
"""PERSON, ORGANIZATION, LOCATION and MISC as CoNLL-2003 labels them (MISC: nationalities,
events, works, products and other names); DATE and MONEY as written dates and amounts, which
the finish step also reads by their form. PRODUCT and EVENT are accepted from older prompts."""


def check_entities(input_: dict[str, Any], output: dict[str, Any]) -> str | None:
    """Each entity must be quoted from the input text."""
    text = str(input_.get("text", ""))
    for entity in output.get("entities", []):
        value = str(entity.get("text", ""))
        if value not in text:
            return f"entity {value!r} does not occur in the input text"
    return None


DAY = r"\d{1,2}(?:st|nd|rd|th)?"
DATE = pattern(
    rf"\b(?:{WEEKDAY},? )?(?:{DAY} {MONTH}(?:,? \d{{4}})?|{MONTH} {DAY}(?:,? \d{{4}})?"
    rf"|{MONTH},? \d{{4}})(?![\w])"
    r"|(?<![\w./-])(?:\d{4}-\d{2}-\d{2}|\d{1,2}([./])\d{1,2}\1\d{4})(?![\w./-])"
    rf"|\b{WEEKDAY}\b"
)
"""A written calendar date (English month and day names), an ISO or d/m/y date, or a weekday."""
DATE_WORD = pattern(
    rf"\b(?:{MONTH}|{WEEKDAY}|spring|summer|autumn|fall|winter|today|tomorrow|yesterday|"
    r"week|month|year|decade|century|quarter|Q[1-4]|FY|H[12])",
    re.IGNORECASE,
)
"""A word without which a value without digits cannot be a date."""
AMOUNT = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?"
SCALE = r"(?: ?(?:thousand|million|billion|trillion)|(?:k|m|bn|mn)(?![\w]))?"
CURRENCY_CODE = r"(?:USD|EUR|GBP|CHF|JPY|CNY|INR|AUD|CAD|SEK|NOK|DKK|PLN|Rs\.?)"
CURRENCY_WORD = r"(?:dollars?|euros?|pounds?|yen|yuan|rupees?|francs?|kronor|kroner|zloty)"
MONEY = pattern(
    rf"(?<![\w$€£¥₹])(?:(?:US|A|C|NZ|HK)?[$€£¥₹] ?(?:{AMOUNT}){SCALE}"
    rf"|{CURRENCY_CODE} ?(?:{AMOUNT}){SCALE}"
    rf"|(?:{AMOUNT}){SCALE} (?:{CURRENCY_WORD}|{CURRENCY_CODE}|€)"
    rf"|(?:{AMOUNT}) ?€)(?![\w])"
)
"""An amount with its currency: a symbol, an ISO code or a currency word."""
CURRENCY = pattern(rf"[$€£¥₹]|\b(?:{CURRENCY_CODE}|{CURRENCY_WORD}|cents?)\b", re.IGNORECASE)
NAMED = ("PERSON", "ORGANIZATION", "LOCATION", "MISC", "PRODUCT", "EVENT")
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


PLACEHOLDER = pattern(r"\[[A-Z][A-Z_]*\]")
"""A typed placeholder that a step before wrote in place of a value ("[PERSON]" from pii)."""


def _mark(mask: bytearray, start: int, end: int) -> None:
    """Set ``mask`` to 1 from ``start`` to ``end``: masks make overlap tests linear in time."""
    mask[start:end] = b"\1" * (end - start)


def _placeholders(text: str) -> bytearray:
    """1 at each character of ``text`` that is part of a placeholder."""
    inside = bytearray(len(text))
    for match in PLACEHOLDER.finditer(text):
        _mark(inside, match.start(), match.end())
    return inside


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
    - An entity that the text holds only inside placeholders ("[PERSON]", written by ``pii``
      before it) is dropped: what a step before redacted is no entity of this text.
    - Written dates and currency amounts the model missed are added (:func:`recognise`),
      each unless it overlaps an entity already listed. Names are the model's alone: no rule
      reads a name's type off the words around it.
    """
    text = str(input_.get("text", ""))
    entities = output.get("entities")
    if not quoted_items(entities):
        return output
    cased = any(c.isupper() for c in text)
    recognised = recognise(text)
    hidden = _placeholders(text)
    kept: list[dict[str, str]] = []
    for entity in entities:
        value = _anchor(text, entity["text"])
        if value and all(hidden.find(0, a, b) == -1 for a, b in _occurrences(text, value)):
            continue  # a placeholder ("[PERSON]") or a word of one: a value hidden upstream
        kind = retype(value, entity["type"], cased=cased) if value else None
        if kind is None:
            continue
        if kind in ("DATE", "MONEY"):
            value = _widened(text, value, kind, recognised)
        elif kind == "PRODUCT" and value[:4] in ("the ", "The ") and len(value) > 4:
            value = value[4:]
        if sum(e["text"] == value for e in kept) < text.count(value):
            kept.append({"text": value, "type": kind})
    covered = bytearray(len(text))  # 1 where a listed entity stands
    for e in kept:
        for start, end in _occurrences(text, e["text"]):
            _mark(covered, start, end)
    for start, end, kind in recognised:
        if covered.find(1, start, end) == -1:
            kept.append({"text": text[start:end], "type": kind})
            _mark(covered, start, end)
    return {**output, "entities": kept}
