"""How the built-in ``sql`` specialist is scored."""

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

from specialists.builtin.scoring import Prediction
from specialists.builtin.sql.checks import check_sql, limit_steps
from specialists.builtin.sql.data import build_database
from specialists.builtin.sql.ddl import InvalidSchema, authorize, schema_database
from swarm.distill.dataset import Example

SQL_STEP_LIMIT = 200_000
"""SQLite VM steps one query may take in scoring; a runaway predicted join is cut off."""


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
