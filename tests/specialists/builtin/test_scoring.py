"""Every task metric on small hand-worked examples."""

from __future__ import annotations

import pytest

from specialists.builtin.entities.scoring import entity_scores
from specialists.builtin.pii.scoring import pii_scores
from specialists.builtin.sql.scoring import sql_scores
from swarm.distill.dataset import Example
from swarm.distill.evaluation import exact_match

TEXT = "Mail Ann Lee at ann@x.io or call 555-0100."
GOLD_PII = Example(
    input={"text": TEXT},
    output={
        "redacted_text": "Mail [PERSON] at [EMAIL] or call [PHONE].",
        "spans": [
            {"text": "Ann Lee", "type": "PERSON"},
            {"text": "ann@x.io", "type": "EMAIL"},
            {"text": "555-0100", "type": "PHONE"},
        ],
    },
)


def test_pii_perfect_prediction() -> None:
    scores = pii_scores([GOLD_PII], [GOLD_PII.output])
    assert scores == {"score": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "leak_rate": 0.0}


def test_pii_partial_prediction_by_hand() -> None:
    # Two spans right, one with the wrong type, the phone missed and left in the text.
    predicted = {
        "redacted_text": "Mail [PERSON] at [EMAIL] or call 555-0100.",
        "spans": [
            {"text": "Ann Lee", "type": "PERSON"},
            {"text": "ann@x.io", "type": "PERSON"},
        ],
    }
    scores = pii_scores([GOLD_PII], [predicted])
    # tp=1, predicted=2, gold=3: P=0.5, R=1/3, F1=0.4
    assert scores["precision"] == 0.5 and scores["recall"] == 0.3333 and scores["f1"] == 0.4
    # Leaked: "555-0100" (8 chars) of 7 + 8 + 8 = 23 gold characters.
    assert scores["leak_rate"] == round(8 / 23, 4)


def test_pii_missing_prediction_leaks_everything() -> None:
    scores = pii_scores([GOLD_PII], [None])
    assert scores["recall"] == 0.0 and scores["leak_rate"] == 1.0 and scores["score"] == 0.0


def test_pii_text_without_pii_and_no_spans_is_perfect() -> None:
    clean = Example(input={"text": "Nothing here."}, output={"redacted_text": "Nothing here.",
                                                             "spans": []})  # fmt: skip
    assert pii_scores([clean], [clean.output])["f1"] == 1.0
    wrong = {"redacted_text": "[PERSON] here.", "spans": [{"text": "Nothing", "type": "PERSON"}]}
    assert pii_scores([clean], [wrong])["precision"] == 0.0


def test_entities_micro_averaged_by_hand() -> None:
    a = Example(
        input={"text": "Acme hired Bo in Oslo."},
        output={"entities": [{"text": "Acme", "type": "ORGANIZATION"},
                             {"text": "Bo", "type": "PERSON"},
                             {"text": "Oslo", "type": "LOCATION"}]},
    )  # fmt: skip
    b = Example(input={"text": "On Monday."}, output={"entities": [{"text": "Monday",
                                                                    "type": "DATE"}]})  # fmt: skip
    predicted_a = {"entities": [{"text": "Acme", "type": "ORGANIZATION"},
                                {"text": "Oslo", "type": "PERSON"}]}  # fmt: skip
    scores = entity_scores([a, b], [predicted_a, None])
    # Over person/organisation/location: tp=1 of 2 predicted and 3 gold: P=0.5, R=1/3, F1=0.4
    assert scores["precision"] == 0.5 and scores["recall"] == pytest.approx(0.3333, abs=1e-4)
    assert scores["f1"] == pytest.approx(0.4) and scores["score"] == scores["f1"]
    # Over every type, the date counts too: tp=1 of 2 predicted and 4 gold, F1=1/3
    assert scores["all_types_f1"] == pytest.approx(0.3333, abs=1e-4)


SCHEMA = "CREATE TABLE t (id INTEGER PRIMARY KEY, city TEXT, n INTEGER);"
ROWS = {"t": [[1, "Oslo", 3], [2, "Rome", 5], [3, "Oslo", 9]]}


def sql_example(gold: str, *, rows: bool = True) -> Example:
    return Example(
        input={"question": "q", "schema": SCHEMA},
        output={"sql": gold},
        meta={"rows": ROWS} if rows else {},
    )


def test_sql_execution_accuracy_compares_results_not_text() -> None:
    examples = [
        sql_example("SELECT COUNT(*) FROM t WHERE city = 'Oslo'"),
        sql_example("SELECT city FROM t WHERE n > 4"),
        sql_example("SELECT city FROM t ORDER BY n DESC LIMIT 2"),
        sql_example("SELECT n FROM t"),
    ]
    predictions = [
        {"sql": "select count(id) from t where city='Oslo';"},  # same result, other text
        {"sql": "SELECT city FROM t WHERE n >= 5 ORDER BY city DESC"},  # unordered gold: any order
        {"sql": "SELECT city FROM t ORDER BY n LIMIT 2 OFFSET 1"},  # ordered gold: wrong order
        {"sql": "DELETE FROM t"},  # not a read-only query
    ]
    scores = sql_scores(examples, predictions)
    assert scores["correct"] == 2 and scores["execution_accuracy"] == 0.5
    assert scores["errors"] == 1


def test_sql_errors_and_missing_predictions_count_as_wrong() -> None:
    examples = [sql_example("SELECT 1"), sql_example("SELECT 1")]
    scores = sql_scores(examples, [{"sql": "SELECT nope FROM missing"}, None])
    assert scores == {"score": 0.0, "execution_accuracy": 0.0, "correct": 0, "errors": 2}


def test_sql_without_rows_fills_tables_so_filters_still_discriminate() -> None:
    example = sql_example("SELECT COUNT(*) FROM t WHERE city = 'Oslo'", rows=False)
    right = sql_scores([example], [{"sql": "SELECT COUNT(*) FROM t WHERE 'Oslo' = city"}])
    wrong = sql_scores([example], [{"sql": "SELECT COUNT(*) FROM t"}])
    assert right["score"] == 1.0
    assert wrong["score"] == 0.0  # filled rows hold other values than 'Oslo' too


def test_exact_match_ignores_key_order() -> None:
    example = Example(input={"text": "x"}, output={"a": 1, "b": [1, 2]})
    assert exact_match([example, example], [{"b": [1, 2], "a": 1}, {"a": 1}])["score"] == 0.5


def test_a_bootstrap_interval_runs_each_sql_pair_once() -> None:
    from specialists.builtin.sql import scoring
    from swarm.distill.evaluation import bootstrap_interval

    examples = [sql_example("SELECT COUNT(*) FROM t WHERE city = 'Oslo'"),
                sql_example("SELECT city FROM t WHERE n > 4")]  # fmt: skip
    predictions = [{"sql": "SELECT 2"}, {"sql": "SELECT city FROM t"}]
    scoring._outcome.cache_clear()
    low, high = bootstrap_interval(examples, predictions, sql_scores, resamples=200) or (0, 0)
    assert (low, high) == (0.0, 1.0)  # one right, one wrong: a draw of either alone
    assert scoring._outcome.cache_info().misses == 2  # built and run once per pair
