"""The built-in generators: exact gold labels, varied data, held-out data kept apart."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import jsonschema
import pytest

from specialists.builtin import BUILTINS
from specialists.builtin.entities import data as entitydata
from specialists.builtin.entities.scoring import entity_scores
from specialists.builtin.pii import data as piidata
from specialists.builtin.pii.scoring import pii_scores
from specialists.builtin.sql import data as sqldata
from specialists.builtin.sql.scoring import sql_scores

GENERATORS = {"pii": piidata.generate, "entities": entitydata.generate, "sql": sqldata.generate}


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("heldout", [False, True])
def test_gold_outputs_fit_the_schemas_and_pass_the_checks(name: str, heldout: bool) -> None:
    builtin = BUILTINS[name]
    for example in GENERATORS[name](60, seed=3, heldout=heldout):
        jsonschema.validate(example.input, builtin.manifest.input_schema)
        jsonschema.validate(example.output, builtin.manifest.output_schema)
        assert example.output is not None
        if builtin.check is not None:
            assert builtin.check(example.input, example.output) is None, example


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generation_is_seeded(name: str) -> None:
    generate = GENERATORS[name]
    assert generate(20, seed=5) == generate(20, seed=5)
    assert generate(20, seed=5) != generate(20, seed=6)


def test_pii_redaction_is_exactly_the_spans_replaced_in_order() -> None:
    for example in piidata.generate(200, seed=1) + piidata.generate(100, seed=1, heldout=True):
        assert example.output is not None
        rebuilt, text = example.output["redacted_text"], example.input["text"]
        for span in example.output["spans"]:
            rebuilt = rebuilt.replace(f"[{span['type']}]", span["text"], 1)
        assert rebuilt == text
    assert pii_scores([example], [example.output])["f1"] == 1.0


def test_entities_gold_spans_are_quoted_from_the_text() -> None:
    examples = entitydata.generate(200, seed=2)
    for example in examples:
        assert example.output is not None
        for entity in example.output["entities"]:
            assert entity["text"] in example.input["text"]
    assert entity_scores(examples, [e.output for e in examples])["f1"] == 1.0


def test_sql_gold_queries_run_and_score_perfectly_against_themselves() -> None:
    examples = sqldata.generate(150, seed=4) + sqldata.generate(50, seed=4, heldout=True)
    assert sql_scores(examples, [e.output for e in examples])["execution_accuracy"] == 1.0


@pytest.mark.parametrize(
    ("module", "key"),
    [(piidata, "template"), (entitydata, "template")],
)
def test_heldout_templates_and_locales_never_appear_in_training(module: object, key: str) -> None:
    train = {e.meta[key] for e in module.generate(400, seed=0)}  # type: ignore[attr-defined]
    held = {e.meta[key] for e in module.generate(200, seed=0, heldout=True)}  # type: ignore[attr-defined]
    assert train and held and not train & held
    assert len(train) >= 20 and len(held) >= 10  # variety: many templates in use
    assert not set(module.TRAIN_LOCALES) & set(module.HELDOUT_LOCALES)  # type: ignore[attr-defined]


def test_sql_heldout_uses_other_tables_and_phrasing() -> None:
    def tables(schema: str) -> set[str]:
        return set(re.findall(r"CREATE TABLE (\w+)", schema))

    train = sqldata.generate(300, seed=0)
    held = sqldata.generate(100, seed=0, heldout=True)
    train_tables = set().union(*(tables(e.input["schema"]) for e in train))
    held_tables = set().union(*(tables(e.input["schema"]) for e in held))
    assert train_tables and held_tables and not train_tables & held_tables
    train_openings = {" ".join(e.input["question"].split()[:2]) for e in train}
    held_openings = {" ".join(e.input["question"].split()[:2]) for e in held}
    assert not train_openings & held_openings
    kinds = {e.output["sql"].split()[1] for e in train if e.output}
    assert {"COUNT(*)", "DISTINCT"} <= kinds and len({e.input["question"] for e in train}) > 150


def _literal_words(template: str) -> set[str]:
    return set(re.findall(r"[a-z]+", re.sub(r"\{[A-Z_]+\d?\}", " ", template).lower()))


@pytest.mark.parametrize("module", [piidata, entitydata])
def test_training_templates_are_many_and_no_heldout_paraphrase(module: object) -> None:
    train, held = module.TRAIN_TEMPLATES, module.HELDOUT_TEMPLATES  # type: ignore[attr-defined]
    assert len(set(train)) == len(train) >= 80
    assert not set(train) & set(held)
    for a in train:  # no training template shares most of its wording with a held-out one
        for b in held:
            words_a, words_b = _literal_words(a), _literal_words(b)
            overlap = len(words_a & words_b) / max(1, len(words_a | words_b))
            assert overlap < 0.6, (a, b)
    used = {e.meta["template"] for e in module.generate(3000, seed=0)}  # type: ignore[attr-defined]
    assert len(used) >= 0.9 * len(train)


def test_entities_training_names_are_many_and_disjoint_from_heldout() -> None:
    assert len(entitydata.TRAIN_PRODUCTS) >= 40 and len(entitydata.TRAIN_EVENTS) >= 40
    for train, held in [
        (entitydata.TRAIN_PRODUCTS, entitydata.HELDOUT_PRODUCTS),
        (entitydata.TRAIN_EVENTS, entitydata.HELDOUT_EVENTS),
    ]:
        assert len(set(train)) == len(train)
        assert not {t.lower() for t in train} & {h.lower() for h in held}
    names = " ".join(entitydata.TRAIN_ORGANIZATIONS + entitydata.TRAIN_PLACES).lower()
    assert not any(h.lower() in names for h in entitydata.HELDOUT_PRODUCTS)
    texts = [e.input["text"] for e in entitydata.generate(400, seed=0)]
    assert not any(h in t for t in texts for h in entitydata.HELDOUT_PRODUCTS)
    assert not any(h in t for t in texts for h in entitydata.HELDOUT_EVENTS)


def test_entities_training_covers_many_shapes() -> None:
    examples = entitydata.generate(1500, seed=7)
    counts = {len(e.output["entities"]) for e in examples if e.output is not None}
    assert {0, 1, 2, 3, 4, 5, 6} <= counts
    texts = [e.input["text"] for e in examples]
    assert any("\n" in t for t in texts)  # emails, notes, records
    assert any(t == t.lower() and any(c.isalpha() for c in t) for t in texts)  # lower-case chat
    assert sum(t.count(". ") >= 2 for t in texts) > 20  # multi-sentence paragraphs
    for example in examples:
        assert example.output is not None
        for entity in example.output["entities"]:
            assert entity["text"] in example.input["text"]


def test_pii_training_formats_are_varied_and_spans_exact() -> None:
    examples = piidata.generate(1500, seed=7)
    builtin = BUILTINS["pii"]
    assert builtin.check is not None
    for example in examples:
        assert example.output is not None
        assert builtin.check(example.input, example.output) is None, example
        for span in example.output["spans"]:
            assert span["text"] in example.input["text"]
    assert any(not e.output["spans"] for e in examples if e.output is not None)
    by_type: dict[str, set[str]] = {}
    for example in examples:
        for span in (example.output or {})["spans"]:
            by_type.setdefault(span["type"], set()).add(span["text"])
    assert set(by_type) == set(piidata.PII_TYPES)
    assert any("\n" in a for a in by_type["ADDRESS"])  # multi-line address layouts
    assert any(p.startswith("+") for p in by_type["PHONE"])
    assert any(" " in i for i in by_type["IBAN"])  # grouped IBANs


@pytest.mark.parametrize("name", ["pii", "entities"])
def test_generation_does_not_depend_on_the_hash_seed(name: str) -> None:
    code = f"import json\nfrom specialists.builtin.{name} import data as m\n" + (
        "print(json.dumps([[e.input, e.output] for h in (False, True) "
        "for e in m.generate(40, seed=2, heldout=h)]))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
        ).stdout
        for hash_seed in (1, 2)
    }
    assert len(outputs) == 1
