"""Loaders of public, human-labelled corpora: each turns one corpus's files into the examples
(input and gold output) of a built-in specialist, for ``swarm distill --labelled`` and
``swarm eval``.

A loader reads a local copy given by path (nothing is downloaded) and records where its
examples came from (:class:`Source`); ``swarm corpus`` writes that record beside the JSONL, and
``swarm distill`` copies it into the adapter's ``training.json``.

Token-per-line NER files (CoNLL-2003, WNUT-17, Wikigold) carry IOB1, IOB2 or plain IO tags;
one chunker reads all three: an entity starts at a ``B-`` tag or where the type changes.
Sentences are written back as text with the spacing of ordinary English (no space before a
comma or "'s"), and each entity is the exact stretch of that text its tokens cover.

The same files carry ``pii`` examples (:func:`pii_example`): the sentence is real, its people are
the corpus's own PER annotations, and some sentences also get one made-up contact or account
value (an e-mail, phone number, card number...) placed into them, since no public corpus labels
those in real text. Organisations and places are not personal data and are never redacted.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specialists.builtin.sql.ddl import compact_schema
from swarm.distill.dataset import Example
from swarm.errors import InvalidData

if TYPE_CHECKING:
    from faker import Faker

RESERVED = (
    "presidio-research",
    "presidio_research",
    "eng.testb",
    "conll2003/test",
    "crossner",
    "geography",
    "sql-eval",
    "defog",
)
"""Names of the sets the project is judged on: never trained on, tuned on or evaluated on. A
test fails if any adapter's ``training.json`` mentions one."""


@dataclass(frozen=True)
class Source:
    """Where a set of examples came from, as ``training.json`` and ``eval.json`` record it."""

    name: str
    repository: str
    commit: str
    files: tuple[str, ...]
    split: str
    licence: str
    examples: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "files": list(self.files)}


CONLL_TYPES = {"PER": "PERSON", "ORG": "ORGANIZATION", "LOC": "LOCATION", "MISC": "MISC"}
"""CoNLL-2003 and Wikigold types, as the entities specialist names them."""
WNUT_TYPES = {
    "person": "PERSON",
    "location": "LOCATION",
    "corporation": "ORGANIZATION",
    "group": "ORGANIZATION",  # bands, teams, parties: CoNLL-2003 labels these ORG too
    "product": "MISC",
    "creative-work": "MISC",
}
"""WNUT-17 types, mapped to the CoNLL-2003 scheme the specialist uses."""

NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "}", "%", "'s", "'S", "n't", "'re",
                   "'ve", "'ll", "'d", "'m", "''"}  # fmt: skip
NO_SPACE_AFTER = {"(", "[", "{", "$", "``", "#"}


def read_tagged(lines: Iterable[str]) -> Iterator[list[tuple[str, str]]]:
    """Sentences of (token, tag) from a token-per-line file: the token first, the tag last.

    Blank or whitespace-only lines end a sentence; ``-DOCSTART-`` lines are skipped.
    """
    sentence: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            if sentence:
                yield sentence
            sentence = []
            continue
        if parts[0] == "-DOCSTART-":
            continue
        if len(parts) < 2:
            raise InvalidData(f"line {number}: expected a token and a tag, got {line.strip()!r}")
        sentence.append((parts[0], parts[-1]))
    if sentence:
        yield sentence


def detokenize(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The sentence as text, and each token's (start, end) in it."""
    text, spans = "", []
    for index, token in enumerate(tokens):
        glue = index == 0 or token in NO_SPACE_BEFORE or tokens[index - 1] in NO_SPACE_AFTER
        if not glue:
            text += " "
        spans.append((len(text), len(text) + len(token)))
        text += token
    return text, spans


def entities_example(sentence: list[tuple[str, str]], types: dict[str, str]) -> Example:
    """One sentence as an entities example: its text in, its entities (text, type) out.

    Tags whose type ``types`` does not name are treated as outside any entity.
    """
    text, found = tagged_entities(sentence, types)
    return Example({"text": text}, {"entities": found})


def tagged_entities(
    sentence: list[tuple[str, str]], types: dict[str, str]
) -> tuple[str, list[dict[str, str]]]:
    """A sentence's text, and its entities (text, type) in order (see :func:`entities_example`)."""
    text, spans = detokenize([token for token, _tag in sentence])
    found: list[dict[str, str]] = []
    start = end = -1
    current = None
    for (_token, tag), (token_start, token_end) in zip(sentence, spans, strict=True):
        prefix, _, raw = tag.partition("-")
        kind = types.get(raw) if prefix in ("B", "I") else None
        if kind is not None and kind == current and prefix == "I":
            end = token_end
            continue
        if current is not None:
            found.append({"text": text[start:end], "type": current})
        current, start, end = kind, token_start, token_end
    if current is not None:
        found.append({"text": text[start:end], "type": current})
    return text, found


def load_tagged(
    path: Path, types: dict[str, str], *, limit: int | None = None, seed: int = 0
) -> list[Example]:
    """Every sentence of a token-per-line NER file as an entities example; with ``limit``, a
    seeded random sample of that many sentences, in file order."""
    with path.open(encoding="utf-8") as lines:
        examples = [entities_example(sentence, types) for sentence in read_tagged(lines)]
    if limit is not None and limit < len(examples):
        keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
        examples = [examples[i] for i in keep]
    return examples


PII_LEADS: dict[str, tuple[str, ...]] = {
    "EMAIL": ("email", "e-mail:", "contact", "write to"),
    "PHONE": ("phone", "tel.", "call", "mobile"),
    "CREDIT_CARD": ("card", "card number", "paid with card"),
    "IBAN": ("IBAN", "account", "bank account"),
    "SSN": ("SSN", "social security number"),
    "IP_ADDRESS": ("IP", "from IP address", "logged in from"),
    "DATE_OF_BIRTH": ("born", "date of birth:", "DOB"),
    "ADDRESS": ("address:", "lives at", "home address"),
}
"""How a placed value is introduced, by type: a short lead, as a note or a form would write it."""
PII_PLACED_SHARE = 0.4
"""The share of sentences that get one made-up value placed into them."""


def pii_example(
    sentence: list[tuple[str, str]],
    types: dict[str, str],
    rng: random.Random,
    fake: Faker,
    *,
    heldout: bool = False,
) -> Example:
    """One real sentence as a pii example: its PERSON entities redacted, and, for a share of
    sentences (:data:`PII_PLACED_SHARE`), one made-up value placed after a person's name or at
    the end, introduced by a lead (``..., tel. +44 20 7946 0958.``). ``heldout`` draws values in
    the evaluation formats and locales of :mod:`piidata`, never the training ones."""
    from specialists.builtin.pii import data as piidata

    text, entities = tagged_entities(sentence, types)
    found: list[tuple[int, int, str]] = []
    at = 0
    for entity in entities:  # in order: each one's position is after the previous
        start = text.index(entity["text"], at)
        at = start + len(entity["text"])
        if entity["type"] == "PERSON":
            found.append((start, at, "PERSON"))
    if rng.random() < PII_PLACED_SHARE:
        kind = rng.choice(sorted(PII_LEADS))
        value = piidata.value(kind, fake, rng, heldout=heldout).replace("\n", ", ")
        lead = rng.choice(PII_LEADS[kind])
        people = [end for _start, end, _kind in found]
        if people and rng.random() < 0.5:  # "Peter Blackburn (tel. ...)"
            place, before, after = rng.choice(people), f" ({lead} ", ")"
        else:  # "..., email ...." before the closing punctuation, if any
            place = len(text.rstrip(".!?\"' "))
            before, after = f", {lead} ", ""
        start = place + len(before)
        text = text[:place] + before + value + after + text[place:]
        shift = len(before) + len(value) + len(after)
        found = [(s + shift if s >= place else s, e + shift if s >= place else e, k)
                 for s, e, k in found] + [(start, start + len(value), kind)]  # fmt: skip
    found.sort()
    redacted, spans, at = [], [], 0
    for start, end, kind in found:
        redacted.append(text[at:start] + f"[{kind}]")
        spans.append({"text": text[start:end], "type": kind})
        at = end
    redacted.append(text[at:])
    return Example({"text": text}, {"redacted_text": "".join(redacted), "spans": spans})


def load_pii(
    path: Path,
    types: dict[str, str],
    *,
    limit: int | None = None,
    seed: int = 0,
    heldout: bool = False,
) -> list[Example]:
    """The sentences of a token-per-line NER file as pii examples (:func:`pii_example`); with
    ``limit``, a seeded sample of that many. Values are drawn from seeded Faker locales:
    :mod:`piidata`'s training locales, or its held-out ones with ``heldout``."""
    from specialists.builtin.fakers import seeded_fakers
    from specialists.builtin.pii import data as piidata

    with path.open(encoding="utf-8") as lines:
        sentences = list(read_tagged(lines))
    if limit is not None and limit < len(sentences):
        keep = sorted(random.Random(seed).sample(range(len(sentences)), limit))
        sentences = [sentences[i] for i in keep]
    locales = piidata.HELDOUT_LOCALES if heldout else piidata.TRAIN_LOCALES
    fakers = seeded_fakers(locales, seed)
    rng = random.Random(seed)
    return [
        pii_example(sentence, types, rng, fakers[rng.choice(locales)], heldout=heldout)
        for sentence in sentences
    ]


def database_schema(database: Path) -> str:
    """The DDL of a SQLite file's tables and views, as ``sqlite_master`` keeps it."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT sql FROM sqlite_master WHERE type IN ('table', 'view') AND sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        ).fetchall()
    finally:
        with contextlib.suppress(sqlite3.Error):
            connection.close()
    return ";\n".join(str(sql).strip() for (sql,) in rows) + ";"


def load_spider(path: Path, *, limit: int | None = None, seed: int = 0) -> list[Example]:
    """Spider-style items (``question``, ``query``, ``db_id``) as sql examples: the question and
    the database's DDL in, the gold query out, and the database file in ``meta.database`` so
    scoring runs both queries on its real rows. Items whose database file is missing are left
    out (they cannot be executed); the databases sit in ``<path's folder>/database``. The schema
    is the file's DDL written compactly (:func:`compact_schema`)."""
    items = json.loads(path.read_text(encoding="utf-8"))
    if limit is not None and limit < len(items):
        keep = sorted(random.Random(seed).sample(range(len(items)), limit))
        items = [items[i] for i in keep]
    schemas: dict[str, str | None] = {}
    examples = []
    for item in items:
        db_id = str(item["db_id"])
        database = (path.parent / "database" / db_id / f"{db_id}.sqlite").resolve()
        if db_id not in schemas:
            schemas[db_id] = (
                compact_schema(database_schema(database)) if database.is_file() else None
            )
        schema = schemas[db_id]
        if schema is None:
            continue
        examples.append(
            Example(
                {"question": str(item["question"]).strip(), "schema": schema},
                {"sql": str(item["query"]).strip()},
                {"database": str(database), "db_id": db_id},
            )
        )
    return examples


CORPORA: dict[str, tuple[dict[str, str] | None, str]] = {
    "conll2003": (CONLL_TYPES, "entities"),
    "wikigold": (CONLL_TYPES, "entities"),
    "wnut17": (WNUT_TYPES, "entities"),
    "spider": (None, "sql"),
    "conll2003-pii": (CONLL_TYPES, "pii"),
    "wikigold-pii": (CONLL_TYPES, "pii"),
    "wnut17-pii": (WNUT_TYPES, "pii"),
}
"""Each corpus a loader reads: its type mapping (NER corpora) and the specialist it feeds."""


def load(
    corpus: str, path: Path, *, limit: int | None = None, seed: int = 0, heldout: bool = False
) -> list[Example]:
    """The examples of ``corpus`` read from ``path`` (see :data:`CORPORA`); ``heldout`` (a dev
    or test split) draws pii's placed values in formats and locales training never sees."""
    if corpus not in CORPORA:
        raise InvalidData(f"unknown corpus {corpus!r}: one of {', '.join(sorted(CORPORA))}")
    if any(reserved in str(path).lower() for reserved in RESERVED):
        raise InvalidData(f"{path} is a reserved evaluation set: it is never read")
    types, specialist = CORPORA[corpus]
    if types is None:
        return load_spider(path, limit=limit, seed=seed)
    if specialist == "pii":
        return load_pii(path, types, limit=limit, seed=seed, heldout=heldout)
    return load_tagged(path, types, limit=limit, seed=seed)
