"""``sql``: a question plus a schema (DDL) in, one SQLite query out, checked against the schema.

A query must parse (sqlglot) as one read-only SELECT, and then compile in SQLite against the
step's own schema: an empty in-memory database built from the DDL, where ``EXPLAIN`` resolves
every table, column and function without running anything. A query that names a column the
schema lacks is invalid output, so the worker retries it and the cascade escalates it, instead
of handing on a query that can only fail.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from specialists.builtin.sql.ddl import InvalidSchema, NotDDL, schema_database

SCHEMA_STEP_LIMIT = 100_000
"""SQLite VM steps that building a schema may take; DDL never needs many."""

MAX_SQL_CHARS = 20_000
"""The longest query checked: far past any answer a model writes within its token budget."""


def check_sql(input_: dict[str, Any], output: dict[str, Any]) -> str | None:
    """The query must be one read-only SELECT that compiles against the input's schema."""
    query = str(output.get("sql", "")).strip().rstrip(";")
    if not query:
        return "empty sql"
    if len(query) > MAX_SQL_CHARS:
        return f"sql is {len(query)} characters; a query may have at most {MAX_SQL_CHARS}"
    try:
        statements = sqlglot.parse(query, read="sqlite")
    except SqlglotError as exc:  # a ParseError, or a TokenError (an unclosed quote)
        return f"sql does not parse: {str(exc).splitlines()[0]}"
    except RecursionError:
        return "sql nests too deeply to parse"
    if len(statements) != 1 or statements[0] is None:
        return "expected exactly one SQL statement"
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        return f"expected a SELECT query, got {statement.key.upper()}"
    return compile_error(str(input_.get("schema", "")), query)


def limit_steps(database: sqlite3.Connection, steps: int) -> None:
    """Interrupt whatever ``database`` runs once it has taken about ``steps`` VM steps."""
    budget = iter(range(steps // 1000))
    database.set_progress_handler(lambda: next(budget, None) is None, 1000)


def compile_error(schema: str, query: str) -> str | None:
    """Why ``query`` does not compile against ``schema``, or why the schema is refused
    (:func:`~specialists.builtin.sql.ddl.schema_database`); None if it compiles, or if the schema
    is no SQL (then nothing can be said about the query's names)."""
    try:
        database = schema_database(schema)
    except NotDDL:
        return None  # a schema described in words: nothing is known about the names
    except InvalidSchema as exc:
        return f"the input's schema is refused: {exc}"
    try:
        limit_steps(database, SCHEMA_STEP_LIMIT)
        try:
            database.execute(f"EXPLAIN {query}")
        except (sqlite3.Error, ValueError) as exc:  # ValueError: an embedded NUL, say
            return f"sql does not compile against the schema: {exc}"
        return None
    finally:
        with contextlib.suppress(sqlite3.Error):
            database.close()
