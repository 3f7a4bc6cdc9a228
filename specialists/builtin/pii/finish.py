"""``pii``: text in, the text with personal data replaced by ``[TYPE]`` plus the spans found."""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left
from collections import Counter
from typing import Any

from specialists.builtin.pii.addresses import INTRODUCING, find_addresses
from specialists.builtin.pii.columns import typed_cells
from specialists.builtin.text import (
    MONTH,
    as_written,
    miscopied,
    pattern,
    quoted_items,
)

PII_TYPES = (
    "PERSON",
    "EMAIL",
    "PHONE",
    "ADDRESS",
    "CREDIT_CARD",
    "IBAN",
    "SSN",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
)

DIGIT_TYPES = frozenset(PII_TYPES) - {"PERSON", "ADDRESS"}
"""The types no value without a digit (or an "@") can be."""


def _numberless(value: str) -> bool:
    """Whether ``value`` has neither a digit nor an "@": it can be of no :data:`DIGIT_TYPES`."""
    return not any(c.isdigit() or c == "@" for c in value)


def check_spans(input_: dict[str, Any], output: dict[str, Any]) -> str | None:
    """Each span's text must occur in the input, and must not survive in the redacted text."""
    text = str(input_.get("text", ""))
    redacted = str(output.get("redacted_text", ""))
    for span in output.get("spans", []):
        value = str(span.get("text", ""))
        if value and value not in text:
            return f"span {value!r} does not occur in the input text"
        if value and value in redacted:
            return f"span {value!r} is still in the redacted text"
    return None


EMAIL = pattern(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
IBAN_CANDIDATE = pattern(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")
CARD = pattern(
    r"(?<![\d+])(?:\d{12,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{5})(?!\d)"
)
IPV4 = pattern(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
SSN_US = pattern(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
PHONE_LIKE = pattern(r"\+?[\d\s().\-/]+(?:\s*(?:x|ext\.?)\s*\d+)?")
DATE_LIKE = pattern(
    r"\d{1,4}[./-]\d{1,2}[./-]\d{2,4}"  # 05.12.1922, 1922-12-05, 12/05/22
    r"|\d{1,2}\.? [A-Za-z]{3,9}\.? \d{4}"  # 5 Dec 1922
    r"|[A-Za-z]{3,9}\.? \d{1,2},? \d{4}"  # December 5, 1922
)
WRITTEN_DATE = pattern(
    r"\d{1,2}[./-]\d{1,2}[./-]\d{4}|\d{4}-\d{2}-\d{2}"
    rf"|\d{{1,2}}\.? {MONTH},? \d{{4}}|{MONTH} \d{{1,2}},? \d{{4}}"
)
"""A whole date with its year, in digits or with an English month name: no address or name is
written so, whatever the model called it."""
EXTENSION = r"(?:\s*(?:x|ext\.?)\s*\d{1,6})?"
PHONE_INTERNATIONAL = pattern(
    rf"(?<![\w+])\+\d{{1,3}}(?:[ ./-]?\(?\d{{1,15}}+\)?){{1,12}}+{EXTENSION}(?!\w)"
)
PHONE_NORTH_AMERICAN = pattern(
    r"(?<![\w+.-])(?:(?:1|001)[-. ])?(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}"
    rf"{EXTENSION}(?![\w-])"
)
"""Phone layouts no other value is written in: a country code after "+", or 3-3-4 digits."""
LABEL_NAMES = r"tel|ph|phone|mob|mobile|cell|fax|e-?mail|mail|ip|iban"
LABEL = pattern(rf"[\W_]*(?:{LABEL_NAMES}|call)?[\W_]*", re.IGNORECASE)
"""What may stand beside a proven value in one span of the model's ("tel. +33 6 36 08 62 72")."""
LABEL_WORD = rf"(?:{LABEL_NAMES}|ssn|card|dob)\b\.?:?"
LABEL_WORDS = pattern(rf"(?:^|\s){LABEL_WORD}\s*$|^\s*{LABEL_WORD}", re.IGNORECASE)
"""A label at the end or start of what stood beside a value ("Ann Lee, SSN")."""
ROLE = pattern(
    r"(?:tenant|landlord|patient|student|pupil|customer|client|caller|guest|visitor|applicant"
    r"|candidate|employee|host|guardian|owner|buyer|seller|sender|recipient|user|member)\s+(?=\S)",
    re.IGNORECASE,
)
"""A role written before a name ("Tenant Ian Pison"), which is no part of it."""
NAME_PARTICLES = frozenset(
    ("da", "das", "de", "del", "della", "der", "di", "do", "dos", "du", "la", "le", "van", "von",
     "y", "e", "ten", "ter", "den", "bin", "ibn", "al", "el")
)  # fmt: skip
"""Lower-case words inside a person's name ("Samuel van der Hoeven", "Heitor da Mata")."""
SPEAKER = pattern(r"(?:I|we|he|she|they)\b[^\d\n]*?\b(?:to|at|in)\s+(?=\S)")
"""A clause the model took into an address ("I moved to Jiplaan 79, ...")."""
IPV6_CANDIDATE = pattern(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")


def is_iban(value: str) -> bool:
    """An IBAN whose ISO 13616 check digits are right (mod 97), spaces allowed."""
    compact = value.replace(" ", "")
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def is_card(value: str) -> bool:
    """A 12-19 digit card number in one of the usual groupings, with a valid Luhn digit."""
    if CARD.fullmatch(value) is None:
        return False
    total = 0
    for position, char in enumerate(reversed([c for c in value if c.isdigit()])):
        digit = int(char) * (2 if position % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_phone(value: str) -> bool:
    """A phone number written with its country code ("+39 368 5525153", "+31(0)65 9895558") or
    in the North American 3-3-4 layout ("340-793-6703", "(620) 230-7597"): 8-15 digits."""
    if not (PHONE_INTERNATIONAL.fullmatch(value) or PHONE_NORTH_AMERICAN.fullmatch(value)):
        return False
    return value.count(")") <= value.count("(") and 8 <= _digits(value) <= 15


def _name_like(value: str) -> bool:
    """Two to six words, each capitalised or a name particle, after any role ("guardian Courtney
    Forbes DDS"): what a person's name looks like, and no other type's value does."""
    lead = ROLE.match(value)
    words = value[lead.end() :].split() if lead else value.split()
    return 2 <= len(words) <= 6 and all(
        (word[0].isupper() or word in NAME_PARTICLES) and word.strip(".-'").isalpha()
        for word in words
    )


TRAILING_EXTENSION = pattern(r"\s*(?:x|ext\.?)\s*\d+$")


def _digits(value: str) -> int:
    """The digits of a phone number, its extension left out."""
    return sum(c.isdigit() for c in TRAILING_EXTENSION.split(value)[0])


def _phone_like(value: str) -> bool:
    return PHONE_LIKE.fullmatch(value) is not None and 7 <= _digits(value) <= 15


def certain_type(value: str) -> str | None:
    """The type of a value whose form alone proves it: email, IP, checksummed IBAN, US-layout
    SSN, card number grouped in fours (or 4-6-5) with a valid Luhn digit, or phone number with
    its country code or in the North American layout (:func:`is_phone`)."""
    if EMAIL.fullmatch(value):
        return "EMAIL"
    if is_ip(value):
        return "IP_ADDRESS"
    if is_iban(value):
        return "IBAN"
    if SSN_US.fullmatch(value):
        return "SSN"  # the US layout, 3-2-4 digits: no phone is written so
    if is_card(value) and not value.isdigit():
        return "CREDIT_CARD"  # grouped; a bare digit run may as well be an SSN or a phone
    if is_phone(value):
        return "PHONE"
    return None


def retype(value: str, kind: str) -> str | None:
    """The model's ``kind`` for ``value``, corrected where the value's form settles it.

    A proven form wins (:func:`certain_type`), then a whole written date (a date of birth) and,
    for a type that needs digits or an "@", a person's name (:func:`_name_like`). An "email" or
    "IP address" that is not one, or a "person" or "address" without a letter, is a date of
    birth or a phone number if it looks like one; a "person" that looks like neither is no PII
    at all (None), and neither is an "IP address" without a dot or a colon. A "phone number" of
    words and digits is an address.
    """
    proven = certain_type(value)
    if proven is not None:
        return proven
    if kind != "DATE_OF_BIRTH" and WRITTEN_DATE.fullmatch(value):
        return "DATE_OF_BIRTH"
    if kind in DIGIT_TYPES and _name_like(value):
        return "PERSON"
    letters = any(c.isalpha() for c in value)
    if kind in ("EMAIL", "IP_ADDRESS") or (kind in ("PERSON", "ADDRESS") and not letters):
        if DATE_LIKE.fullmatch(value):
            return "DATE_OF_BIRTH"
        if _phone_like(value):
            return "PHONE"
        if kind == "PERSON" or (kind == "IP_ADDRESS" and not any(c in value for c in ".:")):
            return None
        return kind
    if kind == "PHONE" and letters and not _phone_like(value) and any(c.isdigit() for c in value):
        return "ADDRESS"
    return kind


def recognise(text: str) -> list[dict[str, str]]:
    """The values in ``text`` that :func:`certain_type` can prove, in order of appearance."""
    found: list[tuple[int, str, str]] = []
    for match in IBAN_CANDIDATE.finditer(text):
        candidate = match.group()
        # A greedy match can run into the next capitalised token; the longest valid prefix
        # that ends on a token boundary is the IBAN.
        for end in range(len(candidate), 14, -1):
            prefix = candidate[:end]
            if (
                not prefix.endswith(" ")
                and not candidate[end : end + 1].isalnum()
                and is_iban(prefix)
            ):
                found.append((match.start(), prefix, "IBAN"))
                break
    proofs = ((EMAIL, "EMAIL", None), (CARD, "CREDIT_CARD", is_card),
              (IPV4, "IP_ADDRESS", is_ip), (IPV6_CANDIDATE, "IP_ADDRESS", is_ip),
              (SSN_US, "SSN", None), (PHONE_INTERNATIONAL, "PHONE", is_phone),
              (PHONE_NORTH_AMERICAN, "PHONE", is_phone))  # fmt: skip
    for proven, kind, proof in proofs:  # no proof: the pattern's match is proof enough
        for match in proven.finditer(text):
            value = match.group()
            if value.endswith(")") and value.count(")") > value.count("("):
                value = value[:-1]  # "(+49 159 04584744)": the bracket is the sentence's
            if proof is None or proof(value):
                found.append((match.start(), value, kind))
    # A phone number has a match for each layout it fits ("+1 (620) 230-7597", "(620) 230-7597").
    spans = [(start, start + len(value)) for start, value, _kind in found]
    found = [
        match
        for match, (start, end) in zip(found, spans, strict=True)
        if not any((a, b) != (start, end) and a <= start and end <= b for a, b in spans)
    ]
    return [{"text": value, "type": kind} for _start, value, kind in sorted(found)]


PLACEHOLDER = pattern(r"\[(" + "|".join(PII_TYPES) + r")\]")
LONGEST_REDACTION = 120
"""Characters one placeholder of the model's may stand for; a longer gap is a bad copy."""


def model_redactions(text: str, redacted: str) -> list[tuple[str, str]]:
    """What the model's own redacted text hides, as (value, type): the stretches of ``text``
    its ``[TYPE]`` placeholders stand in for where the rest of it copies ``text`` exactly, else
    those it anchors on the words it copies around them (:func:`read_placeholders`)."""
    parts = PLACEHOLDER.split(redacted)
    literals, kinds = parts[0::2], parts[1::2]
    if not kinds or not text.startswith(literals[0]) or not text.endswith(literals[-1]):
        return read_placeholders(text, redacted, whole=True)
    hidden, position = [], len(literals[0])
    for literal in literals[1:-1]:
        at = text.find(literal, position + 1) if literal else -1
        if at < 0:  # two placeholders side by side, or a word not copied
            return read_placeholders(text, redacted, whole=True)
        hidden.append(text[position:at])
        position = at + len(literal)
    end = len(text) - len(literals[-1])
    if end <= position:
        return []
    hidden.append(text[position:end])
    if any(len(value) > LONGEST_REDACTION for value in hidden):
        return []
    return [(value, kind) for value, kind in zip(hidden, kinds, strict=True) if value.strip()]


ANCHOR_CHARS = 3
"""Characters, spaces aside, that copied words between two placeholders need to anchor them:
a shorter piece (", ", " at ") may occur anywhere."""


def read_placeholders(text: str, template: str, *, whole: bool) -> list[tuple[str, str]]:
    """The stretches of ``text`` that ``template``'s ``[TYPE]`` placeholders stand for, as
    (value, type), read off the words the template copies from ``text`` around them.

    ``whole``: the template is the model's redacted text, so its first words open ``text`` and
    its last close it. Otherwise it is a span the model wrote with placeholders in it ("I moved
    to [ADDRESS]"): its words are found in ``text`` in order, and an address placeholder that
    ends it, after words that end a clause ("to", "for", ":"; :data:`INTRODUCING`), runs to the
    end of the sentence. A placeholder is read only where the words on both sides of it are
    found; a stretch longer than :data:`LONGEST_REDACTION`, or across lines, is a bad copy.
    """
    parts = PLACEHOLDER.split(template)
    literals, kinds = parts[0::2], parts[1::2]
    if not kinds:
        return []
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    position = 0
    for j, literal in enumerate(literals):
        last = j == len(literals) - 1
        if whole and j == 0:
            if text.startswith(literal):
                ends[0] = position = len(literal)
        elif whole and last:
            if text.endswith(literal) and len(text) - len(literal) > position:
                starts[j] = len(text) - len(literal)
        elif last and not literal.strip():
            if kinds[-1] == "ADDRESS" and j - 1 in ends and INTRODUCED.search(literals[j - 1]):
                starts[j] = _sentence_end(text, position)
        elif len(literal.strip()) >= (1 if last else ANCHOR_CHARS):
            at = text.find(literal, position + (1 if j else 0))
            if at >= 0:
                starts[j], ends[j] = at, at + len(literal)
                position = ends[j]
    hidden = []
    for i, kind in enumerate(kinds):
        if i in ends and i + 1 in starts and starts[i + 1] > ends[i]:
            value = text[ends[i] : starts[i + 1]]
            if value.strip() and len(value) <= LONGEST_REDACTION and "\n" not in value:
                hidden.append((value, kind))
    return hidden


ABBREVIATIONS = frozenset(
    ("st", "dr", "mr", "mrs", "ms", "rd", "ave", "blvd", "apt", "no", "nr", "jr", "sr", "mt",
     "ft", "av", "co", "inc", "ltd", "dott", "prof", "sig", "sra")
)  # fmt: skip
"""Words whose full stop does not end a sentence ("St.", "Dr.", "Apt.")."""


SENTENCE_MARK = pattern(r"(\w*)[.!?](?=\s|$)")
"""A full stop, question or exclamation mark that may end a sentence, with the word before it."""


def _sentence_end(text: str, start: int) -> int:
    """Where the sentence that runs on from ``start`` ends: at a full stop, question or
    exclamation mark not after an abbreviation (:data:`ABBREVIATIONS`), else at the line's
    end."""
    line = text.find("\n", start)
    line = len(text) if line < 0 else line
    for mark in SENTENCE_MARK.finditer(text[start:line]):
        if mark.group(1).lower() not in ABBREVIATIONS:
            return start + mark.end() - 1
    return line


def _cut_or_labelled(kept: list[dict[str, str]], found: dict[str, str]) -> dict[str, str] | None:
    """The model's span that is ``found`` cut short ("39 3685525153" of "+39 3685525153", same
    type) or ``found`` with a label ("tel. +33 6 36 08 62 72", any type); None if none is."""
    value = found["text"]
    for span in kept:
        if span["text"] == value:
            continue
        if span["type"] == found["type"] and span["text"] in value:
            return span
        if value in span["text"] and LABEL.fullmatch(span["text"].replace(value, "", 1)):
            return span
    return None


CLAUSE_END = pattern(rf"(?:^|[.!?](?=\s)|{INTRODUCING})\s*", re.IGNORECASE)
"""What ends the clause an address is written in ("... I moved to ", "Address: ")."""
INTRODUCED = pattern(rf"(?:{INTRODUCING})\s*$", re.IGNORECASE)
ADDRESS_PARTS = 4
"""Comma-separated parts an address cut short may be widened by, at most."""


def _whole_address(text: str, value: str, others: list[str]) -> str:
    """An address the model cut short after its first part ("05, 8859QU, Heerhugowaard" of
    "Jentestraat 05, 8859QU, Heerhugowaard"), widened back over the parts before it, back to
    the start of its clause or sentence (:data:`CLAUSE_END`): each part up to five words, most
    of them capitalised or with a digit (name particles aside), none holding another span's
    value or a date, and the part that opens the clause not one word alone ("However, 5 Baker
    Street")."""
    start = text.find(value)
    for _ in range(ADDRESS_PARTS):
        if start < 2 or text[start - 2 : start] != ", ":
            break
        head = text[: start - 2]
        clause = max((m.end() for m in CLAUSE_END.finditer(head)), default=0)
        after_comma = head.rfind(",") + 1
        part = head[max(clause, after_comma) :].strip()
        words = [word for word in part.split() if word not in NAME_PARTICLES]
        opening = head.endswith(part) and clause >= after_comma
        if not (
            0 < len(words) <= 5
            and not (opening and len(words) == 1 and not any(c.isdigit() for c in part))
            and WRITTEN_DATE.search(part) is None
            and sum(w[0].isupper() or any(c.isdigit() for c in w) for w in words) * 2 > len(words)
            and "@" not in part
            and not any(other in part or part in other for other in others)
        ):
            break
        start = head.rfind(part)
    return text[start:].split(value, 1)[0] + value if start >= 0 else value


SEPARATORS = " \t\n,;:|/<>()"
"""What may stand between two values glued into one span."""


def _split_off(kept: list[dict[str, str]], found: dict[str, str]) -> bool:
    """Whether a span of the model's held the proven value ``found`` glued to another
    ("Vitor Gomes,francisco59@example.com" as a person); if so it is split in place into the
    value and what stood beside it, without labels, each part retyped (a part of words typed
    as a number is a name if it looks like one, else dropped). An address may hold a proven
    value; it stays whole."""
    for index, span in enumerate(kept):
        value = span["text"]
        if found["text"] not in value or value == found["text"]:
            continue
        if span["type"] in (found["type"], "ADDRESS"):
            return False
        parts = []
        for part in value.split(found["text"], 1):
            part = LABEL_WORDS.sub("", part.strip(SEPARATORS)).strip(SEPARATORS)
            kind = retype(part, span["type"]) if part else None
            if kind in DIGIT_TYPES and _numberless(part):
                kind = "PERSON" if _name_like(part) else None
            if kind is not None:
                parts.append({"text": part, "type": kind})
        kept[index : index + 1] = [*parts[:1], dict(found), *parts[1:]]
        return True
    return False


def _add_addresses(text: str, kept: list[dict[str, str]]) -> None:
    """Adds to ``kept`` each address of ``text`` that
    :func:`~specialists.builtin.pii.addresses.find_addresses` reads and the model did not list as
    it is, once per occurrence, in place of the model's spans inside it: the model's parts of
    an address ("Flat 14 80 Dudley Lees" and "Amandamouth, NSW, 2964"), or the address mistyped
    ("Estrada Moura, 3, ..." as a person), become the one address, where the first of them
    stood. Where a span of the model's runs past it, the model's reading stands. A span that
    also occurs outside it is kept."""
    found = find_addresses(text)
    if not found:
        return
    listed = Counter(span["text"] for span in kept if span["type"] == "ADDRESS")
    occurrences = {
        value: [m.span() for m in re.finditer(re.escape(value), text)]
        for value in {span["text"] for span in kept}
        if value
    }
    spans = sorted((a, b, value) for value, where in occurrences.items() for a, b in where)
    starts = [a for a, _b, _value in spans]
    longest = max((b - a for a, b, _value in spans), default=0)
    absorbing: dict[str, tuple[int, int]] = {}  # a model's value -> the address it is part of
    added: list[str] = []
    for start, end in found:
        address = text[start:end]
        if listed[address]:
            listed[address] -= 1  # this occurrence is one the model listed as an address
            continue
        touching: dict[str, list[tuple[int, int]]] = {}
        for a, b, value in spans[bisect_left(starts, start - longest) : bisect_left(starts, end)]:
            if b > start:
                touching.setdefault(value, []).append((a, b))
        if any(
            where[0][0] < start or text[end : where[-1][1]] not in ("", ".")
            for where in touching.values()
        ):
            continue  # the model's span is longer: its reading stands
        inside = [value for value, where in touching.items() if where == occurrences[value]]
        absorbing.update(dict.fromkeys(inside, (start, end)))
        if not inside:
            added.append(address)
    placed: set[tuple[int, int]] = set()
    rebuilt: list[dict[str, str]] = []
    for span in kept:
        whole = absorbing.get(span["text"])
        if whole is None:
            rebuilt.append(span)
        elif whole not in placed:
            placed.add(whole)
            rebuilt.append({"text": text[whole[0] : whole[1]], "type": "ADDRESS"})
    kept[:] = rebuilt + [{"text": address, "type": "ADDRESS"} for address in added]


LEGAL_FORMS = frozenset(
    ("inc", "inc.", "corp", "corp.", "corporation", "co", "co.", "company", "ltd", "ltd.",
     "limited", "llc", "l.l.c.", "llp", "lp", "plc", "gmbh", "ag", "kg", "se", "sa", "s.a.",
     "sas", "sarl", "s.a.r.l.", "srl", "s.r.l.", "spa", "s.p.a.", "bv", "b.v.", "nv", "n.v.",
     "ab", "oy", "as", "a/s", "aps", "kk", "pty", "pty.", "pte", "holdings", "group")
)  # fmt: skip
"""The legal forms that end a company's name (after ISO 20275's list of entity legal forms,
and "Holdings"/"Group"): a name ending in one is an organisation's, never a person's."""


def is_organisation(value: str) -> bool:
    """Whether ``value`` is a company's name by its legal form ("Acme Corp", "Bigot S.A.")."""
    words = value.replace(",", " ").split()
    return len(words) >= 2 and words[-1].lower() in LEGAL_FORMS


def finish_spans(input_: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    """The model's spans repaired and completed, and the redacted text rebuilt from them.

    - A span written with placeholders ("I moved to [ADDRESS]") stands for the values of the
      input they replace (:func:`read_placeholders`).
    - A span's text is trimmed of spaces and separators, a name of the role before it
      ("Tenant Ian Pison"), an address of the clause before it ("I moved to ..."). One that is
      in the input only in other letter case takes the input's casing, one the model miscopied
      ("Rey Le Pelletier") the stretch of the input it miscopies (:func:`miscopied`); one like
      nothing in the input is dropped, as it can be neither redacted nor shown. A value is
      listed as often as the model lists it, up to the times it occurs in the input. An
      address cut short after its first part is widened back to its clause
      (:func:`_whole_address`).
    - A value whose form proves its type (email, IP address, checksummed IBAN, grouped card
      number, US-layout SSN, phone number with a country code or in the North American
      layout) gets that type, and one whose form rules out the model's type is retyped
      (:func:`retype`: a written date is a date of birth, words alone typed as a number a
      name). Provable values the model missed are added, and so are card numbers written as a
      bare run of 12-19 digits with a valid Luhn digit; one the model cut short or listed with
      its label ("tel. +33 6 36 08 62 72") becomes the whole value, and one glued to another
      value in one span is split off (:func:`_split_off`). A cell of a CSV line under a
      header that names its column ("phone") is added with that type, unless a span holds it
      (:func:`~specialists.builtin.pii.columns.typed_cells`).
    - A postal address read by its shape (a street with its number, then postcode, town and
      state parts) is added where the model missed it, and replaces the model's spans inside it
      where it split or mistyped it (:func:`_add_addresses`).
    - What the model's own redacted text hid without listing it (:func:`model_redactions`)
      becomes a span of its own, unless it runs around a listed value. A "person" whose name
      ends in a company's legal form ("Acme Corp") is dropped: organisations are no personal
      data here, and are never redacted as people.
    - ``redacted_text`` is the input with every span's text replaced by ``[TYPE]``, longest
      first: built from the final spans alone, so the two always agree.
    """
    text = str(input_.get("text", ""))
    spans = output.get("spans")
    if not quoted_items(spans):
        return output
    read = [
        pair
        for span in spans
        for pair in (
            read_placeholders(text, span["text"], whole=False)
            if PLACEHOLDER.search(span["text"])
            else [(span["text"], span["type"])]
        )
    ]
    kept: list[dict[str, str]] = []
    for written, model_kind in read:
        value = written.strip(" \t\n,;")
        value = as_written(text, value) or miscopied(text, value).strip(" \t\n,;")
        kind = retype(value, model_kind) if value else None
        if kind in ("PERSON", "ADDRESS"):
            lead = (ROLE if kind == "PERSON" else SPEAKER).match(value)
            value = value[lead.end() :] if lead else value
        if kind is not None and sum(s["text"] == value for s in kept) < text.count(value):
            kept.append({"text": value, "type": kind})
    for span in kept:
        if span["type"] == "ADDRESS":
            others = [other["text"] for other in kept if other is not span]
            span["text"] = _whole_address(text, span["text"], others)
    listed = Counter(span["text"] for span in kept)
    for found in recognise(text):
        value = found["text"]
        if listed[value]:
            listed[value] -= 1  # this occurrence is one the model listed
        elif repaired := _cut_or_labelled(kept, found):
            repaired.update(found)
        elif _split_off(kept, found):
            pass
        elif not any(value in span["text"] for span in kept if span["text"] != value):
            kept.append(found)
    for value, column in typed_cells(text):
        kind = retype(value, column)
        if kind in DIGIT_TYPES and _numberless(value):
            continue  # "n/a" under "phone"
        if kind is not None and not any(value in span["text"] for span in kept):
            kept.append({"text": value, "type": kind})
    _add_addresses(text, kept)
    for value, model_kind in model_redactions(text, str(output.get("redacted_text", ""))):
        # What the model hid without listing it becomes a span, so the spans and the redacted
        # text always agree; never a stretch around a value already listed ("Ann (a@x.io)").
        value = value.strip(" \t\n,;")
        kind = retype(value, model_kind) if value else None
        if kind is not None and not any(value in s["text"] or s["text"] in value for s in kept):
            kept.append({"text": value, "type": kind})
    kept = [
        span for span in kept if not (span["type"] == "PERSON" and is_organisation(span["text"]))
    ]
    types: dict[str, str] = {}
    for span in kept:
        types.setdefault(span["text"], span["type"])
    redacted = text
    for value in sorted(types, key=len, reverse=True):
        redacted = redacted.replace(value, f"[{types[value]}]")
    return {**output, "redacted_text": redacted, "spans": kept}
