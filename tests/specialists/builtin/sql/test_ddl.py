"""A user's schema is data: hostile DDL is refused or bounded, with a reason."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from specialists.builtin.sql.checks import check_sql
from specialists.builtin.sql.ddl import InvalidSchema, check_schema, schema_database

TABLE = "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL, city TEXT);"


def test_tables_indexes_and_views_are_built() -> None:
    schema = (
        f"{TABLE}\nCREATE INDEX orders_city ON orders (city);\n"
        "CREATE VIEW big AS SELECT id FROM orders WHERE total > 100;"
    )
    database = schema_database(schema)
    try:
        names = {row[0] for row in database.execute("SELECT name FROM sqlite_master")}
    finally:
        database.close()
    assert {"orders", "orders_city", "big"} <= names


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        # Gigabytes at build time: refused before SQLite sees it.
        ("CREATE TABLE t AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
         "WHERE x < 1000000) SELECT randomblob(999999999) FROM c;", "AS SELECT"),
        (f"{TABLE} ATTACH DATABASE '/tmp/swarm-attack.db' AS a;", "is ATTACH"),
        (f"{TABLE} VACUUM INTO '/tmp/swarm-attack.db';", "may only CREATE TABLE"),
        ("SELECT load_extension('/tmp/evil.so');", "is SELECT"),
        (f"{TABLE} CREATE TRIGGER t AFTER INSERT ON orders BEGIN DELETE FROM orders; END;",
         "statement 2 of the schema is COMMAND"),
        (f"{TABLE} INSERT INTO orders VALUES (1, 2.0, 'x');", "is INSERT"),
        (f"{TABLE} PRAGMA writable_schema = 1;", "may only CREATE TABLE"),
        ("CREATE TABLE t (" + ", ".join(f"c{i} INT" for i in range(100_000)) + ");",
         "at most 100000"),
    ],
)  # fmt: skip
def test_hostile_ddl_is_refused_with_its_reason(schema: str, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidSchema, match=reason):
        schema_database(schema)
    assert time.perf_counter() - started < 2
    assert not Path("/tmp/swarm-attack.db").exists()


def test_a_huge_default_cannot_allocate_past_the_length_limit() -> None:
    database = schema_database("CREATE TABLE t (a INT, b BLOB DEFAULT (randomblob(999999999)));")
    try:
        with pytest.raises(Exception, match="too big"):
            database.execute("INSERT INTO t (a) VALUES (1)")
    finally:
        database.close()


def test_the_sql_check_refuses_a_hostile_schema_with_its_reason() -> None:
    problem = check_sql(
        {"question": "How many?", "schema": f"{TABLE} ATTACH DATABASE 'x.db' AS a;"},
        {"sql": "SELECT COUNT(*) FROM orders"},
    )
    assert problem is not None and problem.startswith("the input's schema is refused:")
    assert check_sql({"schema": TABLE}, {"sql": "SELECT COUNT(*) FROM orders"}) is None


def test_a_plain_schema_passes_the_parse() -> None:
    check_schema(TABLE + "\n" + TABLE.replace("orders", "customers"))
