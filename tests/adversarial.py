"""Inputs built to make text rules slow: nested repetition, long runs, 100 KB texts."""

from __future__ import annotations

SIZE = 100_000
"""The longest input a worker runs by default (``SWARM_MAX_INPUT_CHARS``)."""

UNITS = (
    "1", "1 ", "1-", "1.", "(1)", "1/", "+1 ", "+1 (1) ", "1:", "1,", "1\n", "12 ",
    "A-", "Aa-", "Aa-Aa ", "a-a ", "Aa ", "Aa Aa, ", "A, ", "AB ", "AB12 ", "1234 AB ",
    "de ", "de la ", "Aa de ", "in ", "Via ", "1ª ", "St. ", "12 Main St, ", "Foo Bar ",
    "a ", "  ", "\n", " ,", "- ", "@", "a@", "a.", "a.a@", "ab:", ":", "x1 ", "ext1 ",
    "$1 ", "1 m", "Aa'", "(", "[PERSON] ", "[ADDRESS], ", "a,b,", "name,email\n",
)  # fmt: skip
"""Short pieces that the rules' patterns read as digits, names, streets, towns, e-mails, phone
numbers, placeholders or CSV cells, each repeated into a long run."""

PREFIXES = ("", "Call +1", "To: 5 ", "Aa ", "I moved to ")


def corpus(size: int = SIZE, *, prefixes: tuple[str, ...] = PREFIXES) -> list[str]:
    """Every unit repeated to ``size`` characters after every prefix, plus the 42-byte input that
    once hung a worker (a phone pattern took time exponential in its digits)."""
    texts = ["Call +1" + "1" * 34 + "x"]
    for unit in UNITS:
        for prefix in prefixes:
            texts.append(prefix + unit * ((size - len(prefix)) // len(unit)) + "x!")
    return texts
