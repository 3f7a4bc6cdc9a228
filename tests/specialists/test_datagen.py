"""The built-in generators: exact gold labels, varied data, held-out data kept apart."""

from __future__ import annotations

import re

import jsonschema
import pytest

from specialists.builtin import BUILTINS, entitydata, piidata, sqldata
from specialists.builtin.scoring import entity_scores, pii_scores, sql_scores

GENERATORS = {"pii": piidata.generate, "entities": entitydata.generate, "sql": sqldata.generate}


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("heldout", [False, True])
def test_gold_outputs_fit_the_schemas_and_pass_the_checks(name: str, heldout: bool) -> None:
    definition = BUILTINS[name]
    for example in GENERATORS[name](60, seed=3, heldout=heldout):
        jsonschema.validate(example.input, definition.input_schema)
        jsonschema.validate(example.output, definition.output_schema)
        assert example.output is not None
        if definition.check is not None:
            assert definition.check(example.input, example.output) is None, example


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
