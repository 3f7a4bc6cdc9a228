"""``sql``: a question plus a schema (DDL) in, one SQLite query out, checked by sqlglot."""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from specialists.builtin.definition import Definition


def check_sql(_input: dict[str, Any], output: dict[str, Any]) -> str | None:
    """The query must parse as SQLite and be a single read-only SELECT."""
    query = str(output.get("sql", "")).strip().rstrip(";")
    if not query:
        return "empty sql"
    try:
        statements = sqlglot.parse(query, read="sqlite")
    except ParseError as exc:
        return f"sql does not parse: {str(exc).splitlines()[0]}"
    if len(statements) != 1 or statements[0] is None:
        return "expected exactly one SQL statement"
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        return f"expected a SELECT query, got {statement.key.upper()}"
    return None


DEFINITION = Definition(
    name="sql",
    description=(
        "Turns a question in plain language into one SQLite SELECT query over a schema given "
        "as CREATE TABLE statements. Input: question and schema. Output: {sql}."
    ),
    keywords=("sql", "query", "database", "table", "select", "count", "how many", "list all"),
    input_schema={
        "type": "object",
        "properties": {
            "question": {"type": "string", "minLength": 1, "description": "What to ask."},
            "schema": {"type": "string", "minLength": 1, "description": "CREATE TABLE DDL."},
        },
        "required": ["question", "schema"],
    },
    output_schema={
        "type": "object",
        "properties": {"sql": {"type": "string", "minLength": 1}},
        "required": ["sql"],
        "additionalProperties": False,
    },
    system_prompt=(
        "You write SQLite queries. Given a database schema and a question, reply with one "
        "SELECT statement that answers the question, using only the tables and columns in the "
        'schema. Reply as JSON: {"sql": "..."}.'
    ),
    few_shot=(
        {
            "input": {
                "question": "How many customers live in Paris?",
                "schema": "CREATE TABLE customers (id INTEGER, name TEXT, city TEXT);",
            },
            "output": {"sql": "SELECT COUNT(*) FROM customers WHERE city = 'Paris'"},
        },
        {
            "input": {
                "question": "List the names of products cheaper than 10.",
                "schema": "CREATE TABLE products (id INTEGER, name TEXT, price REAL);",
            },
            "output": {"sql": "SELECT name FROM products WHERE price < 10"},
        },
    ),
    decoding={"temperature": 0.0, "max_tokens": 128},
    check=check_sql,
)
