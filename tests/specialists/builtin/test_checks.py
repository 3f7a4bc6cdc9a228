"""The built-in specialists' own output checks, case by case."""

from __future__ import annotations

from pathlib import Path

import pytest

from specialists.builtin.sql.checks import check_sql

SCHEMA = (
    "CREATE TABLE customers (id INTEGER, name TEXT, city TEXT);\n"
    "CREATE TABLE orders (id INTEGER, customer_id INTEGER, total REAL);"
)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT name FROM customers WHERE city = 'Paris'",
        "SELECT COUNT(*) FROM orders;",
        "SELECT c.name, SUM(o.total) FROM customers c JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.name HAVING SUM(o.total) > 10 ORDER BY 2 DESC LIMIT 3",
    ],
)
def test_a_query_over_the_schemas_names_passes(query: str) -> None:
    assert check_sql({"schema": SCHEMA}, {"sql": query}) is None


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SELECT nme FROM customers", "no such column: nme"),
        ("SELECT name FROM clients", "no such table: clients"),
        ("SELECT name FROM customers WHERE total > 3", "no such column: total"),
        ("SELECT median(total) FROM orders", "no such function: median"),
    ],
)
def test_a_query_naming_what_the_schema_lacks_is_invalid(query: str, reason: str) -> None:
    assert check_sql({"schema": SCHEMA}, {"sql": query}) == (
        f"sql does not compile against the schema: {reason}"
    )


def test_parse_and_statement_kind_are_checked_before_the_schema() -> None:
    assert check_sql({"schema": SCHEMA}, {"sql": "DELETE FROM orders"}) == (
        "expected a SELECT query, got DELETE"
    )
    assert check_sql({"schema": SCHEMA}, {"sql": "  ; "}) == "empty sql"


def test_a_schema_sqlite_cannot_build_gives_no_verdict_on_names() -> None:
    # Not SQLite DDL, so nothing is known about the names; the parse check still applies.
    assert check_sql({"schema": "customers(name, city)"}, {"sql": "SELECT x FROM y"}) is None


def test_the_schema_cannot_reach_the_file_system(tmp_path: Path) -> None:
    target = tmp_path / "attached.db"
    schema = f"ATTACH DATABASE '{target}' AS other; CREATE TABLE other.t (a INTEGER);"
    problem = check_sql({"schema": schema}, {"sql": "SELECT 1"})
    assert problem is not None and "statement 1 of the schema is ATTACH" in problem
    assert not target.exists()


def test_a_schema_that_runs_away_is_cut_off() -> None:
    schema = (
        "CREATE TABLE t AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
        "SELECT x FROM c;"
    )
    problem = check_sql({"schema": schema}, {"sql": "SELECT 1"})
    assert problem is not None and "CREATE TABLE ... AS SELECT" in problem
