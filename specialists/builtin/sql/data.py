"""Synthetic ``sql`` data: generated schemas with question/SQL pairs proven to run on SQLite.

Each example gets a table (sometimes with an unrelated second table beside it), a dozen rows,
a question from a template and its gold query. The query is executed on an in-memory SQLite
database built from the schema and rows before the example is kept, and the rows travel in
``meta`` so evaluation can compare execution results. The held-out split uses other domains
(tables, columns, values) and other question phrasings than training.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from specialists.builtin.sql.ddl import schema_database
from swarm.distill.dataset import Example

ROWS = 12


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # INTEGER, REAL or TEXT
    values: Callable[[random.Random], Any]

    @property
    def words(self) -> str:
        return self.name.replace("_", " ")

    @property
    def numeric(self) -> bool:
        return self.type in ("INTEGER", "REAL")


@dataclass(frozen=True)
class Table:
    name: str
    singular: str
    columns: tuple[Column, ...]

    @property
    def plural(self) -> str:
        return self.name.replace("_", " ")

    def ddl(self) -> str:
        cols = ", ".join(["id INTEGER PRIMARY KEY"] + [f"{c.name} {c.type}" for c in self.columns])
        return f"CREATE TABLE {self.name} ({cols});"


def pick(*options: Any) -> Callable[[random.Random], Any]:
    return lambda rng: rng.choice(options)


def between(low: int, high: int, step: int = 1) -> Callable[[random.Random], int]:
    return lambda rng: rng.randrange(low, high + 1, step)


def price(low: int, high: int) -> Callable[[random.Random], float]:
    return lambda rng: round(rng.uniform(low, high), 2)


CITIES = ("Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Oslo")
TRAIN_DOMAINS: tuple[Table, ...] = (
    Table(
        "customers",
        "customer",
        (
            Column("name", "TEXT", pick("Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana")),
            Column("city", "TEXT", pick(*CITIES)),
            Column("age", "INTEGER", between(18, 80)),
            Column("balance", "REAL", price(0, 5000)),
        ),
    ),
    Table(
        "products",
        "product",
        (
            Column("name", "TEXT", pick("lamp", "desk", "chair", "pen", "mug", "shelf", "sofa")),
            Column("category", "TEXT", pick("office", "home", "kitchen", "garden")),
            Column("price", "REAL", price(1, 900)),
            Column("stock", "INTEGER", between(0, 200)),
        ),
    ),
    Table(
        "employees",
        "employee",
        (
            Column("name", "TEXT", pick("Ivo", "Jo", "Kai", "Lea", "Mo", "Nia", "Oli", "Pia")),
            Column("department", "TEXT", pick("sales", "engineering", "finance", "support")),
            Column("salary", "INTEGER", between(30000, 150000, 1000)),
            Column("hire_year", "INTEGER", between(2005, 2024)),
        ),
    ),
    Table(
        "orders",
        "order",
        (
            Column("status", "TEXT", pick("shipped", "pending", "cancelled", "delivered")),
            Column("amount", "REAL", price(5, 2000)),
            Column("quantity", "INTEGER", between(1, 20)),
            Column("country", "TEXT", pick("France", "Spain", "Italy", "Germany", "Poland")),
        ),
    ),
    Table(
        "books",
        "book",
        (
            Column("title", "TEXT", pick("Dune", "Emma", "Ulysses", "Beloved", "Hamlet", "Walden")),
            Column("genre", "TEXT", pick("novel", "poetry", "drama", "history")),
            Column("pages", "INTEGER", between(80, 1200)),
            Column("published_year", "INTEGER", between(1800, 2023)),
        ),
    ),
    Table(
        "cars",
        "car",
        (
            Column("make", "TEXT", pick("Fiat", "Volvo", "Kia", "Ford", "Skoda", "Seat")),
            Column("color", "TEXT", pick("red", "blue", "black", "white", "grey")),
            Column("mileage", "INTEGER", between(0, 250000, 500)),
            Column("price", "REAL", price(2000, 60000)),
        ),
    ),
)
TRAIN_DOMAINS += (
    Table(
        "students",
        "student",
        (
            Column("student_name", "TEXT", pick("Ari", "Bea", "Cal", "Dev", "Eva", "Finn", "Gia")),
            Column("course", "TEXT", pick("biology", "law", "physics", "art", "economics")),
            Column("grade_points", "REAL", price(0, 4)),
            Column("enrollment_year", "INTEGER", between(2010, 2024)),
        ),
    ),
    Table(
        "movies",
        "movie",
        (
            Column("movie_title", "TEXT", pick("Heat", "Up", "Jaws", "Rocky", "Alien", "Fargo")),
            Column("studio", "TEXT", pick("Apex", "Lumiere", "Northstar", "Redwood")),
            Column("runtime_minutes", "INTEGER", between(70, 210)),
            Column("box_office", "REAL", price(1, 900)),
        ),
    ),
    Table(
        "stores",
        "store",
        (
            Column("store_name", "TEXT", pick("Corner", "Market", "Depot", "Outlet", "Bazaar")),
            Column("region", "TEXT", pick("north", "south", "east", "west")),
            Column("floor_area", "INTEGER", between(80, 5000, 10)),
            Column("opening_year", "INTEGER", between(1970, 2024)),
        ),
    ),
    Table(
        "invoices",
        "invoice",
        (
            Column("client", "TEXT", pick("Acme", "Globex", "Initech", "Umbrella", "Hooli")),
            Column("currency", "TEXT", pick("EUR", "USD", "GBP", "CHF")),
            Column("total_due", "REAL", price(50, 20000)),
            Column("days_overdue", "INTEGER", between(0, 120)),
        ),
    ),
    Table(
        "sensors",
        "sensor",
        (
            Column("location", "TEXT", pick("roof", "cellar", "lab", "garage", "lobby")),
            Column("unit_type", "TEXT", pick("thermo", "humidity", "pressure", "smoke")),
            Column("last_reading", "REAL", price(-20, 120)),
            Column("battery_level", "INTEGER", between(0, 100)),
        ),
    ),
    Table(
        "recipes",
        "recipe",
        (
            Column("dish_name", "TEXT", pick("paella", "ramen", "goulash", "tacos", "risotto")),
            Column("cuisine", "TEXT", pick("spanish", "japanese", "hungarian", "mexican")),
            Column("prep_minutes", "INTEGER", between(5, 180)),
            Column("calories", "INTEGER", between(150, 1500, 10)),
        ),
    ),
)
HELDOUT_DOMAINS = (
    Table(
        "flights",
        "flight",
        (
            Column("airline", "TEXT", pick("Aer", "Sky", "Nordic", "Iberia", "Alpine")),
            Column("destination", "TEXT", pick("Dublin", "Prague", "Athens", "Zurich", "Riga")),
            Column("duration_minutes", "INTEGER", between(45, 600, 5)),
            Column("fare", "REAL", price(30, 1500)),
        ),
    ),
    Table(
        "patients",
        "patient",
        (
            Column("full_name", "TEXT", pick("Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gil")),
            Column("ward", "TEXT", pick("cardiology", "oncology", "maternity", "surgery")),
            Column("age", "INTEGER", between(1, 99)),
            Column("days_admitted", "INTEGER", between(1, 60)),
        ),
    ),
    Table(
        "songs",
        "song",
        (
            Column("title", "TEXT", pick("Halo", "Yellow", "Hurt", "Creep", "Angie", "Vogue")),
            Column("artist", "TEXT", pick("Nova", "Echo", "Lumen", "Orbit", "Vale")),
            Column("length_seconds", "INTEGER", between(90, 480)),
            Column("plays", "INTEGER", between(0, 1000000, 100)),
        ),
    ),
    Table(
        "hotels",
        "hotel",
        (
            Column("hotel_name", "TEXT", pick("Rex", "Astor", "Bellevue", "Central", "Lido")),
            Column("town", "TEXT", pick("Bruges", "Porto", "Split", "Bled", "Tallinn")),
            Column("stars", "INTEGER", between(1, 5)),
            Column("nightly_rate", "REAL", price(40, 600)),
        ),
    ),
)

Gen = Callable[[Table, random.Random, dict[str, list[Any]]], tuple[str, str]]


def _text_col(table: Table, rng: random.Random) -> Column:
    return rng.choice([c for c in table.columns if not c.numeric])


def _num_col(table: Table, rng: random.Random) -> Column:
    return rng.choice([c for c in table.columns if c.numeric])


def _existing(column: Column, rows: dict[str, list[Any]], rng: random.Random) -> Any:
    return rng.choice(rows[column.name])


def _threshold(column: Column, rows: dict[str, list[Any]], rng: random.Random) -> Any:
    values = sorted(rows[column.name])
    value = values[rng.randint(2, len(values) - 3)]
    return int(value) if column.type == "INTEGER" else round(float(value))


def _sql_literal(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


def question_kinds(heldout: bool) -> list[Gen]:
    """Question generators; each picks columns and values, returns (question, gold SQL)."""

    # Several phrasings per kind in training, drawn after every other choice, so the held-out
    # questions (one phrasing each, none of these) come out the same whatever is added here.
    def say(train: str | tuple[str, ...], held: str, rng: random.Random) -> str:
        if heldout:
            return held
        return train if isinstance(train, str) else rng.choice(train)

    def count_all(t: Table, rng: random.Random, rows: dict[str, list[Any]]) -> tuple[str, str]:
        q = say(
            (
                f"How many {t.plural} are there?",
                f"What is the number of {t.plural}?",
                f"Tell me how many {t.plural} exist.",
                f"{t.plural.capitalize()}: how many rows?",
                f"Total number of {t.plural}?",
                f"Return the count of {t.plural}.",
                f"I need the {t.singular} count.",
                f"How many rows does {t.name} hold?",
            ),
            f"Count the {t.plural}.",
            rng,
        )
        return q, f"SELECT COUNT(*) FROM {t.name}"

    def count_where(t: Table, rng: random.Random, rows: dict[str, list[Any]]) -> tuple[str, str]:
        c = _text_col(t, rng)
        v = _existing(c, rows, rng)
        q = say(
            (
                f"How many {t.plural} have {c.words} {v}?",
                f"What number of {t.plural} have {c.words} equal to {v}?",
                f"Tell me how many {t.plural} are listed with {c.words} {v}.",
                f"How many rows of {t.name} have {c.name} set to {v}?",
                f"Count {t.plural} where {c.words} is {v}.",
                f"Number of {t.plural} with {c.words} = {v}?",
                f"{t.plural.capitalize()} with {c.words} {v}: how many?",
                f"Return the number of {t.name} rows where {c.name} is {v}.",
            ),
            f"Give me the number of {t.plural} whose {c.words} is {v}.",
            rng,
        )
        return q, f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} = {_sql_literal(v)}"

    def list_greater(t: Table, rng: random.Random, rows: dict[str, list[Any]]) -> tuple[str, str]:
        shown, c = _text_col(t, rng), _num_col(t, rng)
        x = _threshold(c, rows, rng)
        op, word = rng.choice([(">", ("greater than", "above")), ("<", ("less than", "below"))])
        more = "more" if op == ">" else "less"
        q = say(
            (
                f"List the {shown.words} of {t.plural} with {c.words} {word[0]} {x}.",
                f"Which {t.plural} have {c.words} {word[0]} {x}? Return their {shown.words}.",
                f"Get the {shown.words} of each {t.singular} whose {c.words} is {more} than {x}.",
                f"What {shown.words} do {t.plural} with {c.words} {op} {x} have?",
                f"Display the {shown.words} of {t.plural} whose {c.words} is {word[1]} {x}.",
                f"Return {shown.words} for {t.plural} with {c.words} {op} {x}.",
                f"{shown.words.capitalize()} of each {t.singular} with {c.words} {word[0]} {x}?",
                f"For each {t.singular} whose {c.words} is {more} than {x}, give its "
                f"{shown.words}.",
            ),
            f"Show {shown.words} for every {t.singular} where {c.words} is {word[1]} {x}.",
            rng,
        )
        return q, f"SELECT {shown.name} FROM {t.name} WHERE {c.name} {op} {x}"

    def aggregate(t: Table, rng: random.Random, rows: dict[str, list[Any]]) -> tuple[str, str]:
        c = _num_col(t, rng)
        fn, word = rng.choice(
            [("AVG", "average"), ("SUM", "total"), ("MAX", "highest"), ("MIN", "lowest")]
        )
        q = say(
            (
                f"What is the {word} {c.words} of all {t.plural}?",
                f"Tell me the {word} {c.words} over all {t.plural}.",
                f"{word.capitalize()} {c.words} of the {t.plural}?",
                f"Across every {t.singular}, what is the {word} {c.words}?",
                f"Calculate the {word} {c.words} over the {t.plural}.",
                f"Return the {word} value of {c.name} in {t.name}.",
                f"What's the {word} {c.words} for the {t.plural}?",
                f"Find the {word} {c.words} among the {t.plural}.",
            ),
            f"Compute the {word} {c.words} across {t.plural}.",
            rng,
        )
        return q, f"SELECT {fn}({c.name}) FROM {t.name}"

    def top_k(t: Table, rng: random.Random, rows: dict[str, list[Any]]) -> tuple[str, str]:
        shown, c = _text_col(t, rng), _num_col(t, rng)
        k = rng.randint(2, 5)
        order, word = rng.choice([("DESC", "highest"), ("ASC", "lowest")])
        q = say(
            (
                f"Which {k} {t.plural} have the {word} {c.words}? Give their {shown.words}.",
                f"List the {shown.words} of the {k} {t.plural} with the {word} {c.words}.",
                f"Get {shown.words} for the {k} {t.plural} with the {word} {c.words}.",
                f"What are the {shown.words} of the {k} {t.plural} ranked {word} by {c.words}?",
                f"Show the {shown.words} of the {k} {t.plural} with the {word} {c.words}.",
                f"Return {shown.words} for the {k} {t.plural} that rank {word} on {c.words}.",
                f"The {k} {t.plural} with the {word} {c.words}: what are their {shown.words}?",
                f"{k} {t.plural} with the {word} {c.words}, {shown.words} only.",
            ),
            f"Top {k} {t.plural} by {word} {c.words}: return {shown.words}.",
            rng,
        )
        return q, f"SELECT {shown.name} FROM {t.name} ORDER BY {c.name} {order} LIMIT {k}"

    def group_count(t: Table, rng: random.Random, rows: dict[str, list[Any]]) -> tuple[str, str]:
        c = _text_col(t, rng)
        q = say(
            (
                f"How many {t.plural} are there for each {c.words}?",
                f"For each {c.words}, how many {t.plural} are there?",
                f"Number of {t.plural} per {c.words}?",
                f"Group the {t.plural} by {c.words} and count them.",
                f"Show each {c.words} with its number of {t.plural}.",
                f"Give the {t.singular} count for every {c.words}.",
                f"Tally the {t.plural} by {c.words}.",
                f"Return every {c.words} together with how many {t.plural} have it.",
            ),
            f"Break down the number of {t.plural} by {c.words}.",
            rng,
        )
        return q, f"SELECT {c.name}, COUNT(*) FROM {t.name} GROUP BY {c.name}"

    def distinct(t: Table, rng: random.Random, rows: dict[str, list[Any]]) -> tuple[str, str]:
        c = _text_col(t, rng)
        q = say(
            (
                f"List the distinct {c.words} values of the {t.plural}.",
                f"What are the unique {c.words} values among {t.plural}?",
                f"Get every distinct {c.words} of the {t.plural}.",
                f"Each {c.words} that occurs in {t.name}, once.",
                f"Show each {c.words} found in the {t.plural}, without repeats.",
                f"What {c.words} values do the {t.plural} have, duplicates removed?",
                f"Return the set of {c.name} values in {t.name}.",
                f"Unique {c.words} of the {t.plural}?",
            ),
            f"Which different {c.words} values appear among {t.plural}?",
            rng,
        )
        return q, f"SELECT DISTINCT {c.name} FROM {t.name}"

    def two_filters(t: Table, rng: random.Random, rows: dict[str, list[Any]]) -> tuple[str, str]:
        shown, filt, c = _text_col(t, rng), _text_col(t, rng), _num_col(t, rng)
        v, x = _existing(filt, rows, rng), _threshold(c, rows, rng)
        q = say(
            (
                f"List the {shown.words} of {t.plural} with {filt.words} {v} and {c.words} "
                f"greater than {x}.",
                f"Which {t.plural} have {filt.words} {v} and {c.words} over {x}? Return their "
                f"{shown.words}.",
                f"Get the {shown.words} of {t.plural} whose {filt.words} is {v} and whose "
                f"{c.words} is more than {x}.",
                f"Show the {shown.words} of {t.plural} where {filt.words} is {v} and "
                f"{c.words} is above {x}.",
                f"Return {shown.words} for {t.plural} with {filt.name} = {v} and {c.name} > {x}.",
                f"{t.plural.capitalize()} with {filt.words} {v} and {c.words} over {x}: give "
                f"their {shown.words}.",
            ),
            f"Find {shown.words} where {filt.words} = {v} and {c.words} exceeds {x}.",
            rng,
        )
        return q, (
            f"SELECT {shown.name} FROM {t.name} WHERE {filt.name} = {_sql_literal(v)} "
            f"AND {c.name} > {x}"
        )

    def argmin(t: Table, rng: random.Random, rows: dict[str, list[Any]]) -> tuple[str, str]:
        shown, c = _text_col(t, rng), _num_col(t, rng)
        order, word = rng.choice([("ASC", "lowest"), ("DESC", "highest")])
        q = say(
            (
                f"What is the {shown.words} of the {t.singular} with the {word} {c.words}?",
                f"Which {t.singular} has the {word} {c.words}? Return its {shown.words}.",
                f"Get the {shown.words} of the single {t.singular} with the {word} {c.words}.",
                f"Return the {shown.words} of the {t.singular} with the {word} {c.words}.",
                f"Find the {shown.words} for the {t.singular} whose {c.words} is the {word}.",
                f"The {t.singular} with the {word} {c.words}: what is its {shown.words}?",
            ),
            f"Name the {shown.words} of the {t.singular} that has the {word} {c.words}.",
            rng,
        )
        return q, f"SELECT {shown.name} FROM {t.name} ORDER BY {c.name} {order} LIMIT 1"

    return [
        count_all, count_where, list_greater, aggregate, top_k, group_count, distinct,
        two_filters, argmin,
    ]  # fmt: skip


def make_rows(table: Table, rng: random.Random) -> list[list[Any]]:
    return [[i + 1] + [c.values(rng) for c in table.columns] for i in range(ROWS)]


def build_database(schema: str, rows: dict[str, list[list[Any]]]) -> sqlite3.Connection:
    """An in-memory database from DDL (built as :func:`~specialists.builtin.sql.ddl.schema_database`
    does) and rows per table (each row in column order)."""
    db = schema_database(schema)
    for table, table_rows in rows.items():
        if table_rows:
            marks = ", ".join("?" * len(table_rows[0]))
            db.executemany(f"INSERT INTO {table} VALUES ({marks})", table_rows)
    return db


def generate(n: int, *, seed: int = 0, heldout: bool = False) -> list[Example]:
    """``n`` examples whose gold queries all ran; ``heldout`` uses unseen domains and phrasing."""
    rng = random.Random(seed)
    domains = HELDOUT_DOMAINS if heldout else TRAIN_DOMAINS
    kinds = question_kinds(heldout)
    examples: list[Example] = []
    while len(examples) < n:
        table = rng.choice(domains)
        tables = [table]
        if rng.random() < 0.3:
            tables.append(rng.choice([d for d in domains if d is not table]))
            rng.shuffle(tables)
        rows = {t.name: make_rows(t, rng) for t in tables}
        by_column = {
            c.name: [row[i + 1] for row in rows[table.name]] for i, c in enumerate(table.columns)
        }
        question, sql = rng.choice(kinds)(table, rng, by_column)
        schema = "\n".join(t.ddl() for t in tables)
        database = build_database(schema, rows)
        try:
            database.execute(sql).fetchall()
        finally:
            database.close()
        examples.append(
            Example(
                input={"question": question, "schema": schema},
                output={"sql": sql},
                meta={"rows": rows},
            )
        )
    return examples
