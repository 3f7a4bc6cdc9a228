"""Corpus loaders, each on a few lines built here, and the rule that reserved sets stay unused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specialists.builtin.corpora import (
    CONLL_TYPES,
    RESERVED,
    WNUT_TYPES,
    detokenize,
    load,
    read_tagged,
)
from swarm.errors import InvalidData

ADAPTERS = Path(__file__).parents[3] / "adapters"

CONLL_IOB1 = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
to TO I-VP O
boycott VB I-VP O
British JJ I-NP I-MISC
lamb NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

In IN I-PP O
Paris NNP I-NP I-LOC
Rome NNP I-NP B-LOC
and CC O O
the DT I-NP O
U.S. NNP I-NP I-LOC
's POS B-NP O
Bank NNP I-NP I-ORG
of IN I-PP I-ORG
Italy NNP I-NP I-ORG
( ( O O
BOI NNP I-NP I-ORG
) ) O O
said VBD I-VP O
, , O O
" " O O
"""

WNUT_IOB2 = "@paulwalk\tO\nIt\tO\n's\tO\nthe\tO\nEmpire\tB-location\nState\tI-location\n" \
    "Building\tI-location\n\t\nApple\tB-corporation\nand\tO\nGoogle\tB-corporation\n" \
    "Maps\tB-product\n"  # fmt: skip

WIKIGOLD_IO = "010 I-MISC\nis O\nthe O\nalbum O\nby O\nJuno I-PER\nReactor I-PER\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def entities(example: object) -> list[tuple[str, str]]:
    output = example.output  # type: ignore[attr-defined]
    return [(e["text"], e["type"]) for e in output["entities"]]


def test_conll2003_iob1_sentences_become_entities_examples(tmp_path: Path) -> None:
    first, second, third = load("conll2003", write(tmp_path, "eng.train", CONLL_IOB1))
    assert first.input == {"text": "EU rejects German call to boycott British lamb."}
    assert entities(first) == [("EU", "ORGANIZATION"), ("German", "MISC"), ("British", "MISC")]
    assert entities(second) == [("Peter Blackburn", "PERSON")]
    # B- splits two places side by side; "'s" and brackets are written as English writes them.
    assert third.input["text"] == "In Paris Rome and the U.S.'s Bank of Italy (BOI) said, \""
    assert entities(third) == [
        ("Paris", "LOCATION"), ("Rome", "LOCATION"), ("U.S.", "LOCATION"),
        ("Bank of Italy", "ORGANIZATION"), ("BOI", "ORGANIZATION"),
    ]  # fmt: skip


def test_wnut17_iob2_with_tab_only_breaks_maps_to_the_conll_types(tmp_path: Path) -> None:
    first, second = load("wnut17", write(tmp_path, "wnut17train.conll", WNUT_IOB2))
    assert first.input == {"text": "@paulwalk It's the Empire State Building"}
    assert entities(first) == [("Empire State Building", "LOCATION")]
    assert entities(second) == [
        ("Apple", "ORGANIZATION"), ("Google", "ORGANIZATION"), ("Maps", "MISC")
    ]  # fmt: skip


def test_wikigold_io_tags_read_as_runs(tmp_path: Path) -> None:
    (only,) = load("wikigold", write(tmp_path, "wikigold.conll.txt", WIKIGOLD_IO))
    assert entities(only) == [("010", "MISC"), ("Juno Reactor", "PERSON")]


def test_every_entity_is_the_exact_stretch_of_its_text(tmp_path: Path) -> None:
    for example in load("conll2003", write(tmp_path, "eng.train", CONLL_IOB1)):
        for value, _kind in entities(example):
            assert value in example.input["text"]


def test_a_seeded_sample_keeps_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "eng.train", CONLL_IOB1)
    sample = load("conll2003", path, limit=2, seed=3)
    every = load("conll2003", path)
    assert len(sample) == 2 and sample == [e for e in every if e in sample]
    assert sample == load("conll2003", path, limit=2, seed=3)


def test_detokenize_keeps_offsets() -> None:
    text, spans = detokenize(["He", "said", "(", "yes", ")", "."])
    assert text == "He said (yes)."
    assert [text[a:b] for a, b in spans] == ["He", "said", "(", "yes", ")", "."]


def test_a_line_without_a_tag_is_a_clear_error() -> None:
    with pytest.raises(InvalidData, match="line 2"):
        list(read_tagged(["EU I-ORG\n", "rejects\n"]))


def test_unknown_corpora_and_reserved_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match="unknown corpus"):
        load("ontonotes9", tmp_path / "x")
    with pytest.raises(InvalidData, match="reserved"):
        load("conll2003", write(tmp_path, "eng.testb", CONLL_IOB1))


def test_the_type_maps_name_only_the_specialist_types() -> None:
    from specialists.builtin.entities.finish import ENTITY_TYPES

    assert set(CONLL_TYPES.values()) | set(WNUT_TYPES.values()) <= set(ENTITY_TYPES)


@pytest.mark.parametrize("document", sorted(ADAPTERS.rglob("*.json")), ids=str)
def test_no_adapter_names_a_reserved_set(document: Path) -> None:
    """presidio-research, CoNLL-2003 testb, CrossNER, text2sql-data's geography and defog's
    sql-eval are what the project is judged on: never trained, tuned or evaluated on."""
    text = json.dumps(json.loads(document.read_text())).lower()
    assert [name for name in RESERVED if name in text] == []


def test_spider_items_become_sql_examples_scored_on_the_real_rows(tmp_path: Path) -> None:
    import sqlite3

    from specialists.builtin.sql.scoring import sql_scores

    folder = tmp_path / "database" / "shop"
    folder.mkdir(parents=True)
    database = sqlite3.connect(folder / "shop.sqlite")
    database.executescript(
        'CREATE TABLE "item" (id INTEGER PRIMARY KEY, name TEXT, price REAL);'
        "INSERT INTO item VALUES (1, 'pen', 2.5), (2, 'ink', 7.0), (3, 'pad', 4.0);"
    )
    database.commit()
    database.close()
    items = [
        {"db_id": "shop", "question": "How many items cost more than 3? ",
         "query": "SELECT count(*) FROM item WHERE price > 3"},
        {"db_id": "gone", "question": "Anything?", "query": "SELECT 1"},  # no database file
    ]  # fmt: skip
    path = write(tmp_path, "dev.json", json.dumps(items))
    (example,) = load("spider", path)
    assert example.input == {
        "question": "How many items cost more than 3?",
        "schema": "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL);",
    }
    assert example.output == {"sql": "SELECT count(*) FROM item WHERE price > 3"}
    right = {"sql": "SELECT COUNT(id) FROM item WHERE price >= 4"}
    wrong = {"sql": "SELECT count(*) FROM item"}
    assert sql_scores([example, example], [right, wrong])["correct"] == 1
    # Scoring ran on a copy: the file is as it was.
    check = sqlite3.connect(folder / "shop.sqlite")
    assert check.execute("SELECT count(*) FROM item").fetchone() == (3,)
    check.close()


def test_a_schema_is_written_compactly_with_the_same_meaning() -> None:
    from specialists.builtin.sql.ddl import compact_schema, schema_database

    laid_out = (
        'CREATE TABLE "singer" (\n"Singer_ID" int,\n"Name" text,\n"Song Name" text,\n'
        'PRIMARY KEY ("Singer_ID")\n);\nCREATE TABLE "concert" (\n"id" int,\n"Singer_ID" int,\n'
        'FOREIGN KEY ("Singer_ID") REFERENCES `singer`("Singer_ID")\n);'
    )
    compact = compact_schema(laid_out)
    assert compact.splitlines()[0].startswith("CREATE TABLE singer (Singer_ID INT")
    assert '"Song Name"' in compact  # a name that needs its quotes keeps them
    assert "REFERENCES singer (Singer_ID)" in compact and "\n\n" not in compact
    assert len(compact) < len(laid_out)
    tables = schema_database(compact).execute("SELECT name FROM sqlite_master").fetchall()
    assert {name for (name,) in tables} >= {"singer", "concert"}
    # DDL SQLite takes but sqlglot trips on (a key named in another case) keeps its words.
    odd = 'CREATE TABLE s (\n"School_ID" int,\n PRIMARY KEY ("School_Id")\n);'
    assert compact_schema(odd) == 'CREATE TABLE s ( "School_ID" int, PRIMARY KEY ("School_Id") );'


def pii_pairs(example: object) -> list[tuple[str, str]]:
    output = example.output  # type: ignore[attr-defined]
    return [(s["text"], s["type"]) for s in output["spans"]]


def test_pii_examples_redact_the_corpus_people_and_never_its_organisations(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "eng.train", CONLL_IOB1)
    examples = load("conll2003-pii", path, seed=0)
    assert len(examples) == 3
    for example in examples:
        text, output = example.input["text"], example.output
        kinds = [kind for _value, kind in pii_pairs(example)]
        assert "ORGANIZATION" not in kinds and "LOCATION" not in kinds
        rebuilt = output["redacted_text"]
        for value, kind in pii_pairs(example):  # the redaction is exactly the spans
            assert value in text and f"[{kind}]" in rebuilt
            rebuilt = rebuilt.replace(f"[{kind}]", value, 1)
        assert rebuilt == text
    assert ("Peter Blackburn", "PERSON") in pii_pairs(examples[1])
    assert "Bank of Italy" in examples[2].output["redacted_text"]  # not personal data
    assert "EU rejects German call" in examples[0].output["redacted_text"]


def test_placed_values_are_seeded_and_use_held_out_formats_off_the_train_split(
    tmp_path: Path,
) -> None:
    from specialists.builtin import corpora

    path = write(tmp_path, "eng.train", CONLL_IOB1 * 40)
    train = load("conll2003-pii", path, seed=4)
    assert train == load("conll2003-pii", path, seed=4)
    placed = [e for e in train if any(k != "PERSON" for _v, k in pii_pairs(e))]
    share = len(placed) / len(train)
    assert abs(share - corpora.PII_PLACED_SHARE) < 0.15
    kinds = {k for e in placed for _v, k in pii_pairs(e)}
    assert len(kinds) >= 5  # several types, not one
    dev = load("conll2003-pii", path, seed=4, heldout=True)
    assert dev != train
    people = [[v for v, k in pii_pairs(e) if k == "PERSON"] for e in train]
    assert people == [[v for v, k in pii_pairs(e) if k == "PERSON"] for e in dev]


def test_max_chars_keeps_only_short_examples_before_sampling(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, "eng.train", CONLL_IOB1)
    out = tmp_path / "short.jsonl"
    result = subprocess.run([
        str(Path(sys.executable).with_name("swarm")), "corpus", "conll2003", str(path),
        "--out", str(out), "--max-chars", "100", "--repository", "r", "--commit", "c",
        "--split", "train", "--licence", "l",
    ], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["input"]["text"] for r in rows] == ["Peter Blackburn"]
    sources = json.loads((tmp_path / "short.jsonl.sources.json").read_text())["sources"]
    assert sources[0]["max_chars"] == 100 and sources[0]["examples"] == 1
