"""The built-in ``sql`` specialist: its manifest, with its checks
(:mod:`specialists.builtin.sql.checks`)."""

from __future__ import annotations

from specialists.builtin.definition import builtin_manifest
from specialists.builtin.sql import data
from specialists.builtin.sql.checks import check_sql
from specialists.builtin.sql.scoring import sql_scores
from swarm.manifest import Specialist

SPECIALIST = Specialist(
    manifest=builtin_manifest(
        {
            "name": "sql",
            "description": (
                "Turns a question in plain language into one SQLite SELECT query over a schema "
                "given as CREATE TABLE statements. Input: question and schema. Output: {sql}."
            ),
            "keywords": [
                "sql",
                "query",
                "database",
                "table",
                "select",
                "count",
                "how many",
                "list all",
            ],
            "input_schema": {
                "type": "object",
                "properties": {
                    "question": {"type": "string", "minLength": 1, "description": "What to ask."},
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "description": "CREATE TABLE DDL.",
                    },
                },
                "required": ["question", "schema"],
            },
            "output_schema": {
                "type": "object",
                "properties": {"sql": {"type": "string", "minLength": 1}},
                "required": ["sql"],
                "additionalProperties": False,
            },
            "system_prompt": (
                "You write SQLite queries. Given a database schema and a question, reply with one "
                "SELECT statement that answers the question, using only the tables and columns in "
                'the schema. Reply as JSON: {"sql": "..."}.'
            ),
            "few_shot": (
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
            "decoding": {"temperature": 0.0, "max_tokens": 128},
        }
    ),
    check=check_sql,
    scorer=sql_scores,
    metric="execution_accuracy",
    generate=data.generate,
)
