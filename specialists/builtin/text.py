"""What the built-in specialists' rules share: the text input, date words, bounded patterns,
and how a value the model quotes is found in the text it came from."""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import Any, TypeGuard

MONTH_NAMES = (
    r"January|February|March|April|May|June|July|August|September|October|November|December"
)
MONTH = rf"(?:{MONTH_NAMES}|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?)"
"""An English month name, whole or abbreviated: what the finish steps read written dates by."""
WEEKDAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
"""An English weekday name."""

MOST_REPEATS = 100
"""The most times any part of a rule's pattern may repeat: longer than any e-mail's local part
(64), street or town word, digit group or clause the rules read, and short enough that no input
can make one match attempt long."""


def pattern(source: str, flags: int = 0, *, most: int = MOST_REPEATS) -> re.Pattern[str]:
    """``source`` compiled with every unbounded repetition bounded by ``most``.

    ``*`` becomes ``{0,most}``, ``+`` becomes ``{1,most}`` and ``{m,}`` becomes ``{m,most}``,
    outside character classes; a ``*``, ``+`` or ``?`` after a quantifier (possessive or lazy)
    stays as it is. The rules read user and model text, and an unbounded repetition is what lets
    a short input make a regular expression take quadratic or exponential time. Patterns stay
    written in the usual notation, and the bound lives here, once.
    """
    out: list[str] = []
    escaped = in_class = False
    quantified = False  # the previous token was a quantifier
    opened = False  # the previous character opened a group
    index = 0
    while index < len(source):
        char, literal = source[index], escaped
        if escaped:
            out.append(char)
            escaped = quantified = False
        elif char == "\\":
            out.append(char)
            escaped = True
        elif in_class:
            out.append(char)
            in_class = char != "]" or source[index - 1] == "["
        elif char == "[":
            out.append(char)
            in_class = True
            if source[index + 1 : index + 2] == "^":
                out.append("^")
                index += 1
            if source[index + 1 : index + 2] == "]":  # "[]...]" or "[^]...]": a literal "]"
                out.append("]")
                index += 1
            quantified = False
        elif char in "*+" and not quantified:
            out.append(f"{{{0 if char == '*' else 1},{most}}}")
            quantified = True
        elif (
            char == "{"
            and (close := source.find("}", index)) != -1
            and re.fullmatch(r"\d+,\d*|\d+", source[index + 1 : close])
        ):
            low, comma, high = source[index + 1 : close].partition(",")
            out.append(f"{{{low},{high or most}}}" if comma else source[index : close + 1])
            index = close
            quantified = True
        else:
            out.append(char)
            # "?" is a quantifier, or a lazy or possessive mark, except right after a group's "(".
            quantified = char == "?" and not opened
        opened = char == "(" and not literal and not in_class
        index += 1
    return re.compile("".join(out), flags)


def quoted_items(items: Any) -> TypeGuard[list[dict[str, Any]]]:
    """Whether ``items`` is a list of ``{"text": str, "type": str, ...}``, the shape of pii's
    spans and of entities: what their finish steps repair. Anything else is left to the schema
    check, which says what is wrong with it."""
    return isinstance(items, list) and all(
        isinstance(i, dict) and isinstance(i.get("text"), str) and isinstance(i.get("type"), str)
        for i in items
    )


def as_written(text: str, value: str) -> str:
    """``value`` as ``text`` writes it: itself if it occurs there, else the stretch of ``text``
    that differs from it only in letter case, else ""."""
    if value in text:
        return value
    at = text.lower().find(value.lower())
    return text[at : at + len(value)] if at >= 0 else ""


MISCOPY_SIMILARITY = 0.8
"""How alike (difflib's ratio, letter case ignored) a miscopied value and the stretch of the
input it stands for must be: "Alexander de la Marchand" for "Alexandre de la Marchand" is 0.96,
"Rey Le Pelletier" for "Raymond Le Pelletier" 0.83; a sentence the model wrote around its
placeholders scores about 0.6 against the text it came from."""
SHORTEST_MISCOPY = 6
"""Characters a value needs before it is matched loosely: two short values differ in a letter
or two without one being a miscopy of the other ("2613" and "2913")."""
EDGE = ".,;:!?\"'"
"""What may end a stretch of the input as punctuation of the sentence, not of the value."""


def miscopied(text: str, value: str) -> str:
    """The stretch of ``text`` that ``value`` most likely miscopies ("Alexander de la Marchand"
    of "Alexandre de la Marchand", "0356-066131" of "(0356)-066131"); "" if none is at least
    :data:`MISCOPY_SIMILARITY` alike.

    A small model copies a name, number or address with a letter or a bracket wrong, or a word
    too many; without this the answer loses the value, and a redactor leaves it readable. The
    stretches weighed are as many whole words as ``value`` has, without the sentence's
    punctuation at their ends and with balanced brackets, so that difflib's ratio, which
    favours the shorter of two stretches, cannot prefer a part of a name to the whole.
    """
    words = value.split()
    if len(value) < SHORTEST_MISCOPY or not words:
        return ""
    tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    matcher = SequenceMatcher(autojunk=False)
    matcher.set_seq2(value.lower())  # difflib caches what it learns of the second sequence
    best, best_ratio = "", MISCOPY_SIMILARITY
    for first in range(len(tokens) - len(words) + 1):
        stretch = text[tokens[first][0] : tokens[first + len(words) - 1][1]]
        for candidate in _unpunctuated(stretch):
            matcher.set_seq1(candidate.lower())
            if matcher.real_quick_ratio() < best_ratio or matcher.quick_ratio() < best_ratio:
                continue
            ratio = matcher.ratio()
            if ratio > best_ratio or (ratio == best_ratio and not best):
                best, best_ratio = candidate, ratio
    return best


def _unpunctuated(stretch: str) -> set[str]:
    """``stretch`` and, where they differ, it without the sentence's punctuation at its end,
    without an unbalanced bracket at either end: the forms a value written there may take."""
    forms = {stretch, stretch.rstrip(EDGE)}
    for form in list(forms):
        if form.count("(") > form.count(")"):
            forms.add(form.lstrip("("))
        if form.count(")") > form.count("("):
            forms.add(form.rstrip(")").rstrip(EDGE))
    return {form for form in forms if form and form.count("(") == form.count(")")}
