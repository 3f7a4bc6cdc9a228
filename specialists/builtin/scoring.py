"""Task metrics of the built-in specialists, each over a list of gold examples and predictions.

A prediction is the specialist's parsed output, or None where it gave none that validated. Each
scorer returns its headline figure as ``score`` beside the details. Counts are micro-averaged:
every span or entity in the data weighs the same, whichever example it sits in.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import re
import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

from specialists.builtin.ddl import InvalidSchema, authorize, schema_database
from specialists.builtin.sql import check_sql, limit_steps
from specialists.builtin.sqldata import build_database
from swarm.distill.dataset import Example

Prediction = dict[str, Any] | None

SQL_STEP_LIMIT = 200_000
"""SQLite VM steps one query may take in scoring; a runaway predicted join is cut off."""


def _prf(true_positive: int, predicted: int, gold: int) -> dict[str, float]:
    precision = true_positive / predicted if predicted else (1.0 if gold == 0 else 0.0)
    recall = true_positive / gold if gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def _pairs(items: Any) -> Counter[tuple[str, str]]:
    if not isinstance(items, list):
        return Counter()
    return Counter(
        (str(item.get("text", "")), str(item.get("type", "")))
        for item in items
        if isinstance(item, dict)
    )


def _matches(
    examples: Sequence[Example], predictions: Sequence[Prediction], key: str
) -> dict[str, float]:
    """Micro precision/recall/F1 of the (text, type) items under ``key``."""
    tp = predicted = gold_count = 0
    for example, prediction in zip(examples, predictions, strict=True):
        gold = _pairs((example.output or {}).get(key))
        found = _pairs((prediction or {}).get(key))
        tp += sum((gold & found).values())
        predicted += sum(found.values())
        gold_count += sum(gold.values())
    return _prf(tp, predicted, gold_count)


def pii_scores(examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
    """Span precision/recall/F1 over (text, type), and the leak rate.

    The leak rate is the share of gold PII characters still readable in the predicted redacted
    text. A missing prediction leaks everything: the conservative reading for a privacy filter.
    """
    gold_chars = leaked_chars = 0
    for example, prediction in zip(examples, predictions, strict=True):
        redacted = (
            str(prediction.get("redacted_text", "")) if prediction else str(example.input["text"])
        )
        gold = _pairs((example.output or {}).get("spans"))
        by_value = Counter(text for (text, _type), n in gold.items() for _ in range(n))
        for value, count in by_value.items():
            gold_chars += len(value) * count
            leaked_chars += len(value) * min(count, redacted.count(value))
    scores = _matches(examples, predictions, "spans")
    leak_rate = leaked_chars / gold_chars if gold_chars else 0.0
    return {"score": scores["f1"], **scores, "leak_rate": round(leak_rate, 4)}


SCORED_ENTITY_TYPES = ("PERSON", "ORGANIZATION", "LOCATION")
"""The types the headline entity F1 is over: the ones every public NER corpus labels alike.
Dates and amounts come from rules, and MISC differs between corpora; both are reported apart."""


def _of_types(items: Any, types: Sequence[str]) -> list[Any]:
    if not isinstance(items, list):
        return []
    return [i for i in items if isinstance(i, dict) and i.get("type") in types]


def entity_scores(examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
    """Entity-level precision/recall/F1: an entity counts only with exact text and type.

    ``score`` is the F1 over :data:`SCORED_ENTITY_TYPES`; ``all_types`` scores every type.
    """

    def only(output: Any) -> dict[str, Any]:
        items = (output or {}).get("entities")
        return {"entities": _of_types(items, SCORED_ENTITY_TYPES)}

    named = _matches(
        [Example(e.input, only(e.output), e.meta) for e in examples],
        [only(p) for p in predictions],
        "entities",
    )
    every = _matches(examples, predictions, "entities")
    return {"score": named["f1"], **named, "all_types_f1": every["f1"]}


def sql_scores(examples: Sequence[Example], predictions: Sequence[Prediction]) -> dict[str, Any]:
    """Execution accuracy: the predicted query returns the gold query's rows on the same data.

    Rows compare as a multiset unless the gold query orders them. Each example's database is
    built from its schema and ``meta.rows``; without rows (teacher-labelled data), tables are
    filled with seeded random values, reusing the gold query's literals so filters match.
    """
    outcomes = Counter(
        _outcome(
            json.dumps(example.to_json(), sort_keys=True),
            str(prediction.get("sql", "")) if prediction else None,
        )
        for example, prediction in zip(examples, predictions, strict=True)
    )
    correct, errors = outcomes["correct"], outcomes["error"]
    total = len(examples)
    accuracy = correct / total if total else 0.0
    return {"score": round(accuracy, 4), "execution_accuracy": round(accuracy, 4),
            "correct": correct, "errors": errors}  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _outcome(example_json: str, predicted_sql: str | None) -> str:
    """``correct``, ``wrong`` or ``error`` for one example and predicted query (None: no valid
    answer). Cached by value: a bootstrap interval scores the same pairs a thousand times, and
    each would otherwise build its database and run both queries again."""
    if predicted_sql is None:
        return "error"
    example = Example.from_json(json.loads(example_json))
    gold_sql = str((example.output or {}).get("sql", ""))
    if check_sql(example.input, {"sql": predicted_sql}) is not None:
        return "error"
    try:
        database = _database(example, gold_sql)
    except InvalidSchema:
        return "error"  # nothing can run on a refused schema, the gold query included
    try:
        expected = _run(database, gold_sql)
        try:
            got = _run(database, predicted_sql)
        except sqlite3.Error:
            return "error"
    finally:
        database.close()
    ordered = re.search(r"\border\s+by\b", gold_sql, re.IGNORECASE) is not None
    same = (got == expected) if ordered else (Counter(got) == Counter(expected))
    return "correct" if same else "wrong"


def _run(database: sqlite3.Connection, sql: str) -> list[tuple[Any, ...]]:
    rows = database.execute(sql.strip().rstrip(";")).fetchall()
    return [tuple(round(v, 4) if isinstance(v, float) else v for v in row) for row in rows]


def _database(example: Example, gold_sql: str) -> sqlite3.Connection:
    schema = str(example.input.get("schema", ""))
    rows = example.meta.get("rows")
    if isinstance(example.meta.get("database"), str):
        database = _copy_of(example.meta["database"])
    elif isinstance(rows, dict):
        database = build_database(schema, rows)
    else:
        database = schema_database(schema)
        database.set_authorizer(None)  # this module's own PRAGMA and INSERTs, then the guard
        _fill(database, gold_sql)
        database.set_authorizer(authorize)
    limit_steps(database, SQL_STEP_LIMIT)
    return database


def _copy_of(path: str) -> sqlite3.Connection:
    """An in-memory copy of a corpus's SQLite file (read only), guarded as a schema is: the
    predicted query runs on it, never on the file."""
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    database = sqlite3.connect(":memory:")
    try:
        source.backup(database)
    finally:
        source.close()
    database.set_authorizer(authorize)
    return database


def _fill(database: sqlite3.Connection, gold_sql: str) -> None:
    rng = random.Random(gold_sql)
    words = [*re.findall(r"'([^']*)'", gold_sql), "other", "else"]
    numbers = [float(n) for n in re.findall(r"\b\d+(?:\.\d+)?\b", gold_sql)] or [10.0]
    tables = [
        row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type='table'")
    ]
    for table in tables:
        columns = database.execute(f"PRAGMA table_info({table})").fetchall()
        for _ in range(12):
            values: list[Any] = []
            for _cid, _name, kind, *_rest in columns:
                kind = str(kind).upper()
                if "INT" in kind:
                    values.append(int(rng.choice(numbers) * rng.uniform(0.5, 1.5)))
                elif any(k in kind for k in ("REAL", "FLOA", "DOUB", "NUM", "DEC")):
                    values.append(round(rng.choice(numbers) * rng.uniform(0.5, 1.5), 2))
                else:
                    values.append(rng.choice(words))
            marks = ", ".join("?" * len(values))
            with contextlib.suppress(sqlite3.IntegrityError):
                database.execute(f"INSERT INTO {table} VALUES ({marks})", values)
