"""``entities``' finish step: dates and amounts recognised, types the form settles, repairs."""

from __future__ import annotations

from typing import Any

import pytest

from specialists.builtin import BUILTINS
from specialists.builtin.entities import data as entitydata
from specialists.builtin.entities.finish import DATE, MONEY, finish_entities, recognise, retype


def finish(text: str, *entities: tuple[str, str]) -> list[tuple[str, str]]:
    output = {"entities": [{"text": t, "type": k} for t, k in entities]}
    return [(e["text"], e["type"]) for e in finish_entities({"text": text}, output)["entities"]]


@pytest.mark.parametrize(
    ("value", "money"),
    [
        ("$98", True),
        ("€714.57", True),
        ("£300 million", True),
        ("$4.5 billion", True),
        ("$40m", True),
        ("US$5 million", True),
        ("EUR 12,300", True),
        ("Rs 4,000", True),
        ("400 billion dollars", True),
        ("3,000 yen", True),
        ("12,50 €", True),
        ("500 jobs", False),
        ("12,000 people", False),
        ("8 percent", False),
        ("$", False),
    ],
)
def test_money_is_an_amount_with_its_currency(value: str, money: bool) -> None:
    assert (MONEY.fullmatch(value) is not None) is money


@pytest.mark.parametrize(
    ("value", "date"),
    [
        ("10 April 2024", True),
        ("April 10, 2024", True),
        ("August 2025", True),
        ("Sept 3", True),
        ("12 Dec", True),
        ("Friday, October 12", True),
        ("Monday", True),
        ("2024-04-10", True),
        ("12/05/2024", True),
        ("12.05.2024", True),
        ("2024", False),  # a year alone may as well be a number
        ("May I", False),
        ("3 Mayors", False),
        ("1.2.3.4", False),
    ],
)
def test_a_date_is_written_with_a_calendar_word_or_in_a_date_layout(value: str, date: bool) -> None:
    assert (DATE.fullmatch(value) is not None) is date


@pytest.mark.parametrize(
    ("value", "kind", "cased", "expected"),
    [
        ("€5", "PRODUCT", True, "MONEY"),  # a whole amount is money whatever the model said
        ("3 May 2024", "EVENT", True, "DATE"),
        ("500 jobs", "MONEY", True, None),  # no currency, no money
        ("spring 2025", "DATE", True, "DATE"),
        ("the 1990s", "DATE", True, "DATE"),
        ("the launch", "DATE", True, None),  # neither a digit nor a calendar word
        ("500 jobs", "LOCATION", True, None),  # a name without a capital, in cased text
        ("berlin", "LOCATION", False, "LOCATION"),  # ... is a name in text typed all lower case
        ("42", "PERSON", False, None),  # a name without a letter
        ("Acme Corp", "ORGANIZATION", True, "ORGANIZATION"),
    ],
)
def test_a_type_the_form_settles_is_corrected_or_the_value_dropped(
    value: str, kind: str, cased: bool, expected: str | None
) -> None:
    assert retype(value, kind, cased=cased) == expected


def test_recognise_finds_dates_and_amounts_in_order() -> None:
    text = "On 3 May 2024 Acme paid $1.2 million, and EUR 300 on Friday."
    assert [(text[a:b], kind) for a, b, kind in recognise(text)] == [
        ("3 May 2024", "DATE"),
        ("$1.2 million", "MONEY"),
        ("EUR 300", "MONEY"),
        ("Friday", "DATE"),
    ]


def test_what_the_model_missed_is_added_unless_it_overlaps_an_entity() -> None:
    text = "Acme paid $98 on 3 May 2024 at Expo May 3 Hall."
    got = finish(text, ("Acme", "ORGANIZATION"), ("Expo May 3 Hall", "LOCATION"))
    assert got == [
        ("Acme", "ORGANIZATION"),
        ("Expo May 3 Hall", "LOCATION"),
        ("$98", "MONEY"),
        ("3 May 2024", "DATE"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "The library was written in Python and runs in Docker.",
        "Obituary: Marie Miller died on Tuesday in Reunion.",
        "Sales rose in March, with reports in English.",
    ],
)
def test_no_place_is_added_for_a_capitalised_word_after_in(text: str) -> None:
    # The model's reading stands: "in X" is no evidence of a place ("written in Python").
    assert all(kind in ("DATE", "MONEY") for _value, kind in finish(text))


def test_a_date_or_amount_cut_short_is_widened_to_the_whole_one() -> None:
    text = "He died on April 03, 2025 in Rome; the estate paid $98 million by 16 Dec."
    got = finish(text, ("April 03", "DATE"), ("$98", "MONEY"), ("16 Dec", "DATE"))
    assert got == [
        ("April 03, 2025", "DATE"),
        ("$98 million", "MONEY"),
        ("16 Dec", "DATE"),  # the stop is the sentence's
    ]


def test_a_product_is_named_without_its_article() -> None:
    text = "ok so Ann said the Pixel 9 is delayed again"
    assert finish(text, ("the Pixel 9", "PRODUCT"), ("Ann", "PERSON")) == [
        ("Pixel 9", "PRODUCT"),
        ("Ann", "PERSON"),
    ]


def test_miscopied_entities_are_repaired_or_dropped() -> None:
    text = "Press release - Bigot S.A. partners with Dumont S.L.."
    got = finish(
        text,
        (" bigot s.a.", "ORGANIZATION"),  # spaces trimmed, re-cased to the input
        ("Dumont S.L..", "ORGANIZATION"),  # the sentence's stop is not the name's
        ("Dumond", "ORGANIZATION"),  # not in the input: no answer
    )
    assert got == [("Bigot S.A.", "ORGANIZATION"), ("Dumont S.L.", "ORGANIZATION")]


def test_a_value_is_listed_no_more_often_than_it_occurs() -> None:
    got = finish("Ann met Bo.", ("Ann", "PERSON"), ("Ann", "PERSON"), ("Bo", "PERSON"))
    assert got == [("Ann", "PERSON"), ("Bo", "PERSON")]


def test_an_output_of_another_shape_is_left_to_the_schema_check() -> None:
    odd: dict[str, Any] = {"entities": [{"text": 1}]}
    assert finish_entities({"text": "x"}, odd) is odd


def test_the_worker_and_the_evaluation_use_it() -> None:
    assert BUILTINS["entities"].finish is finish_entities


@pytest.mark.parametrize("heldout", [False, True])
def test_finish_leaves_every_gold_answer_as_it_is(heldout: bool) -> None:
    # The repairs must never turn a right answer into a wrong one.
    for example in entitydata.generate(1500, seed=11, heldout=heldout):
        assert example.output is not None
        assert finish_entities(example.input, example.output) == example.output, example


def test_placeholders_written_upstream_are_no_entities() -> None:
    text = "[PERSON] met [PERSON] of [ORGANIZATION] in Berlin; call [PHONE]."
    got = finish(
        text,
        ("[PERSON]", "PERSON"), ("PERSON", "PERSON"), ("PHONE", "LOCATION"),
        ("ORGANIZATION", "ORGANIZATION"), ("Berlin", "LOCATION"),
    )  # fmt: skip
    assert got == [("Berlin", "LOCATION")]


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("NATO met in Brussels.", "NATO", "ORGANIZATION"),  # capitals alone are no placeholder
        ("The [Berlin] office opened.", "Berlin", "LOCATION"),  # brackets around a name
        ("PERSON of the year: [PERSON] beat PERSON Corp.", "PERSON Corp", "ORGANIZATION"),
    ],
)
def test_a_name_outside_any_placeholder_stays(text: str, value: str, kind: str) -> None:
    assert (value, kind) in finish(text, (value, kind))
