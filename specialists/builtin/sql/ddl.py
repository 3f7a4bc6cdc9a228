"""A user's SQL schema, built as data: the one guarded path from DDL text to a SQLite database.

A task's schema is user input, and so is the data ``swarm eval`` and ``swarm distill`` read.
Running it with ``executescript`` would run anything: ``ATTACH`` creates files, ``VACUUM INTO``
writes them, ``CREATE TABLE t AS WITH RECURSIVE ... randomblob(...)`` allocates gigabytes, a
trigger runs code later. So the text is parsed first (sqlglot), and only table, index and view
definitions are built: ``CREATE TABLE`` without ``AS SELECT``, ``CREATE INDEX`` and
``CREATE VIEW`` (whose query is stored, not run). The database is a fresh in-memory one with
SQLite's length limits, an authorizer that refuses the file system and extensions, and a
wall-clock budget.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from swarm.errors import UserError

MAX_SCHEMA_CHARS = 100_000
"""The longest schema built: hundreds of tables' worth of DDL."""
BUILD_BUDGET_S = 1.0
"""Wall-clock budget of building a schema (and of each query run on it by the checks)."""
LENGTH_LIMIT = 1_000_000
"""SQLite's SQLITE_LIMIT_LENGTH: the largest string or blob a value may hold."""

_DENIED = {
    sqlite3.SQLITE_ATTACH,
    sqlite3.SQLITE_DETACH,
    sqlite3.SQLITE_PRAGMA,
    sqlite3.SQLITE_CREATE_TRIGGER,
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
    sqlite3.SQLITE_CREATE_VTABLE,
}
"""Actions refused on a schema database, whatever the parse let through."""
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}


class InvalidSchema(UserError):
    """A schema that is not plain table, index and view definitions, or that is too big."""


class NotDDL(InvalidSchema):
    """Schema text that is no SQL statement at all ("customers(name, city)"): a description a
    user wrote, which nothing can be built from, and which runs nothing either."""


_STATEMENT_NAMES = ("Command", "Query", "Insert", "Update", "Delete", "Drop", "Alter", "Create",
                    "Pragma", "Attach", "Detach", "Transaction", "Commit", "Rollback", "Set",
                    "Use", "Merge", "Copy", "Analyze", "Describe")  # fmt: skip
_STATEMENTS = tuple(getattr(exp, name) for name in _STATEMENT_NAMES if hasattr(exp, name))
"""What sqlglot parses a statement SQLite would run into; anything else is no statement."""


def authorize(action: int, arg1: str | None, *_rest: object) -> int:
    if action in _DENIED:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg1 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def check_schema(schema: str) -> None:
    """Nothing, if ``schema`` is only CREATE TABLE/INDEX/VIEW statements within the size cap.

    Raises :class:`InvalidSchema` saying which statement is refused and why.
    """
    if len(schema) > MAX_SCHEMA_CHARS:
        raise InvalidSchema(
            f"the schema is {len(schema)} characters; at most {MAX_SCHEMA_CHARS} are built"
        )
    try:
        parsed = sqlglot.parse(schema, read="sqlite")
    except SqlglotError as exc:
        raise NotDDL(f"the schema does not parse as SQL: {str(exc).splitlines()[0]}") from exc
    except RecursionError as exc:
        raise InvalidSchema("the schema nests too deeply to parse") from exc
    if not any(isinstance(statement, _STATEMENTS) for statement in parsed):
        raise NotDDL("the schema holds no SQL statement")
    for number, statement in enumerate(parsed, 1):
        if statement is None or not isinstance(statement, _STATEMENTS):
            raise InvalidSchema(f"statement {number} of the schema is no SQL statement")
        kind = statement.args.get("kind") if isinstance(statement, exp.Create) else None
        kind = str(kind or "").upper()
        if kind not in ("TABLE", "INDEX", "VIEW"):
            what = f"CREATE {kind}" if kind else statement.key.upper()
            raise InvalidSchema(
                f"statement {number} of the schema is {what}: a schema may only CREATE TABLE, "
                "CREATE INDEX or CREATE VIEW"
            )
        if kind == "TABLE" and isinstance(statement.expression, exp.Query):
            raise InvalidSchema(
                f"statement {number} of the schema is CREATE TABLE ... AS SELECT: define the "
                "table's columns instead"
            )


def limit_time(database: sqlite3.Connection, seconds: float) -> None:
    """Interrupt whatever ``database`` runs from now on once ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    database.set_progress_handler(lambda: time.monotonic() > deadline, 1000)


def schema_database(schema: str) -> sqlite3.Connection:
    """A fresh in-memory database with ``schema`` built in it, guarded as the module says.

    Raises :class:`InvalidSchema` for a refused statement, a schema SQLite rejects, or one that
    runs past :data:`BUILD_BUDGET_S`. The caller closes the connection; it keeps the
    authorizer and length limits, and :func:`limit_time` bounds what runs on it next.
    """
    check_schema(schema)
    database = sqlite3.connect(":memory:")
    try:
        database.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, LENGTH_LIMIT)
        database.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SCHEMA_CHARS)
        database.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        database.set_authorizer(authorize)
        limit_time(database, BUILD_BUDGET_S)
        # The user's own text, as SQLite reads it: the parse above decided what kinds of
        # statement it holds; the authorizer and limits hold even where the two parsers differ.
        database.executescript(schema)
    except sqlite3.OperationalError as exc:
        with contextlib.suppress(sqlite3.Error):
            database.close()
        if "interrupted" in str(exc):
            raise InvalidSchema(f"building the schema ran past {BUILD_BUDGET_S:g} s") from exc
        raise NotDDL(f"the schema does not build: {exc}") from exc
    except (sqlite3.Error, ValueError) as exc:
        with contextlib.suppress(sqlite3.Error):
            database.close()
        raise NotDDL(f"the schema does not build: {exc}") from exc
    return database


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,100}")
_BLANKS = re.compile(r"\s{1,1000}")


def compact_schema(schema: str) -> str:
    """``schema`` written compactly, one statement a line: the same tables, columns, keys and
    references with quotes dropped from plain names and no layout. A database file's DDL, as its
    maker laid it out, can take three times the model's tokens of this; the meaning is the same.
    Text sqlglot cannot read or write (SQLite takes some DDL it does not) has its blanks folded."""
    try:
        statements = [s for s in sqlglot.parse(schema, read="sqlite") if s is not None]
        for statement in statements:
            for ident in statement.find_all(exp.Identifier):
                if _PLAIN_NAME.fullmatch(ident.name):
                    ident.set("quoted", False)
        return "\n".join(f"{s.sql(dialect='sqlite')};" for s in statements)
    except (SqlglotError, RecursionError, LookupError, ValueError):  # sqlglot's rewrites can
        return _BLANKS.sub(" ", schema).strip()  # trip on what SQLite takes (a key's case)
