"""``pii``'s finish step: the recognisers, the repairs of the model's spans, the rebuilt text."""

from __future__ import annotations

from typing import Any

import pytest

from specialists.builtin import BUILTINS
from specialists.builtin.pii import data as piidata
from specialists.builtin.pii.finish import (
    certain_type,
    finish_spans,
    model_redactions,
    recognise,
    retype,
)

IBAN = "GB82 WEST 1234 5698 7654 32"  # the ISO 13616 example: valid check digits
CARD = "4111 1111 1111 1111"  # a Luhn-valid test number


def finish(text: str, *spans: tuple[str, str]) -> dict[str, Any]:
    output = {"redacted_text": "", "spans": [{"text": t, "type": k} for t, k in spans]}
    return finish_spans({"text": text}, output)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("ann.lee+news@mail.example.co.uk", "EMAIL"),
        ("10.0.0.1", "IP_ADDRESS"),
        ("2001:db8::1", "IP_ADDRESS"),
        (IBAN, "IBAN"),
        ("DE89370400440532013000", "IBAN"),
        (CARD, "CREDIT_CARD"),
        ("443-55-5303", "SSN"),  # the US layout
        ("666-55-5303", None),  # never issued
        ("3782-822463-10005", "CREDIT_CARD"),  # Amex grouping
        ("GB82 WEST 1234 5698 7654 33", None),  # check digits wrong
        ("4111 1111 1111 1112", None),  # Luhn digit wrong
        ("4111111111111111", None),  # bare digits: could be an SSN or a phone
        ("+39 368 5525153", "PHONE"),  # a country code
        ("+31(0)65 9895558", "PHONE"),
        ("001-463-828-1726x4701", "PHONE"),
        ("(620) 230-7597", "PHONE"),
        ("340.793.6703", "PHONE"),
        ("+49 12", None),  # too few digits
        ("0356 066131", None),  # no country code, no North American layout: could be anything
        ("999.1.1.1", None),
        ("10:22:13", None),
        ("Ann Lee", None),
    ],
)
def test_only_a_form_that_proves_its_type_has_a_certain_type(value: str, kind: str | None) -> None:
    assert certain_type(value) == kind


@pytest.mark.parametrize(
    ("value", "kind", "corrected"),
    [
        ("ann@x.io", "PERSON", "EMAIL"),  # proven
        ("+31(0)32-2472991", "PERSON", "PHONE"),  # a "person" without a letter
        ("05.12.1922", "PERSON", "DATE_OF_BIRTH"),
        ("5", "PERSON", None),  # neither: no personal data at all
        ("03 65 82 14 24", "IP_ADDRESS", "PHONE"),  # an "IP address" that is not one
        ("5", "IP_ADDRESS", None),  # without a dot or a colon, no address at all
        ("30 O'Brazil Street N34 4XD3", "PHONE", "ADDRESS"),  # words and digits
        ("+1-283-435-0295x18302", "PHONE", "PHONE"),  # an extension is no word
        ("Ann Lee", "PERSON", "PERSON"),
        ("12 High St", "ADDRESS", "ADDRESS"),
        ("592-46-0804", "PHONE", "SSN"),
        ("December 16, 2006", "ADDRESS", "DATE_OF_BIRTH"),  # a whole date, whatever it was called
        ("29 Sep 1981", "SSN", "DATE_OF_BIRTH"),
        ("Broadway 12, 2000", "ADDRESS", "ADDRESS"),  # no month: no date
        ("guardian Courtney Forbes DDS", "EMAIL", "PERSON"),  # words alone: a name
        ("Callum McCann", "EMAIL", "PERSON"),
        ("reception desk", "EMAIL", "EMAIL"),  # not a name either: left to the model
    ],
)
def test_a_type_the_form_rules_out_is_corrected(
    value: str, kind: str, corrected: str | None
) -> None:
    assert retype(value, kind) == corrected


def test_recognise_finds_each_provable_value_in_order() -> None:
    text = (
        f"pls refund to {IBAN} BIC NWBKGB2L - Ann, mail ann@x.io. Card {CARD}, also "
        "5500000000000004 and order 123456789012. From 10.0.0.1; at 10:22:13 via 2001:db8::1. "
        "SSN 443-55-5303, phone 555-123-4567."
    )
    assert recognise(text) == [
        {"text": IBAN, "type": "IBAN"},  # stops before the BIC, though that is capitalised too
        {"text": "ann@x.io", "type": "EMAIL"},
        {"text": CARD, "type": "CREDIT_CARD"},
        {"text": "5500000000000004", "type": "CREDIT_CARD"},  # bare, but Luhn-valid
        {"text": "10.0.0.1", "type": "IP_ADDRESS"},
        {"text": "2001:db8::1", "type": "IP_ADDRESS"},
        {"text": "443-55-5303", "type": "SSN"},
        {"text": "555-123-4567", "type": "PHONE"},  # the North American layout
    ]


def test_a_mistyped_email_is_retyped_and_the_text_rebuilt_from_the_spans() -> None:
    got = finish("Mail Ann Lee at ann@x.io today", ("Ann Lee", "PERSON"), ("ann@x.io", "PERSON"))
    assert got == {
        "redacted_text": "Mail [PERSON] at [EMAIL] today",
        "spans": [{"text": "Ann Lee", "type": "PERSON"}, {"text": "ann@x.io", "type": "EMAIL"}],
    }


def test_miscopied_spans_are_repaired_or_dropped() -> None:
    got = finish(
        "Student Karen Zimmerman, karen.z@yahoo.com.au",
        ("Karen.z@yahoo.com.au", "EMAIL"),  # other letter case: the input's casing
        (" Karen Zimmerman,", "PERSON"),  # spaces and separators around it
        ("Maria Lopez", "PERSON"),  # nothing in the input is like it
    )
    assert got["spans"] == [
        {"text": "karen.z@yahoo.com.au", "type": "EMAIL"},
        {"text": "Karen Zimmerman", "type": "PERSON"},
    ]
    assert got["redacted_text"] == "Student [PERSON], [EMAIL]"


def test_what_the_models_redacted_text_hid_becomes_a_span_so_text_and_spans_agree() -> None:
    text = "Call Lauren Bud on 0612 today"
    output = {
        "redacted_text": "Call [PERSON] on 0612 today",
        "spans": [{"text": "Maria Lopez", "type": "PERSON"}],  # not in the input: dropped
    }
    got = finish_spans({"text": text}, output)
    assert got == {
        "redacted_text": "Call [PERSON] on 0612 today",
        "spans": [{"text": "Lauren Bud", "type": "PERSON"}],
    }


def test_an_organisation_is_never_redacted_as_a_person() -> None:
    # The README's own example: the model hid the company as a person and the email with its
    # brackets; the finished answer lists what it redacts and redacts what it lists.
    text = "Maria Lopez (maria@example.com) met Acme Corp in Berlin."
    output = {
        "redacted_text": "[PERSON] met [PERSON] in Berlin.",
        "spans": [{"text": "Maria Lopez", "type": "PERSON"},
                  {"text": "maria@example.com", "type": "EMAIL"}],
    }  # fmt: skip
    got = finish_spans({"text": text}, output)
    assert got["redacted_text"] == "[PERSON] ([EMAIL]) met Acme Corp in Berlin."
    assert got["spans"] == output["spans"]


@pytest.mark.parametrize(
    "name",
    ["Ann Corley", "Co Nguyen", "Sa Ra", "Ingrid Aas", "Inc"],  # no legal form ends them
)
def test_a_person_is_not_taken_for_a_company(name: str) -> None:
    got = finish_spans({"text": f"Ask {name} today"}, {"redacted_text": "", "spans": [
        {"text": name, "type": "PERSON"}]})  # fmt: skip
    assert got["spans"] == [{"text": name, "type": "PERSON"}]


def test_a_miscopied_value_is_the_stretch_of_the_input_it_miscopies() -> None:
    text = "Visitor log: Raymond Le Pelletier signed in. Regards, Ize, tel. (0356)-066131"
    got = finish(text, ("Rey Le Pelletier", "PERSON"), ("0356-066131", "EMAIL"))
    assert got["spans"] == [
        {"text": "Raymond Le Pelletier", "type": "PERSON"},  # the whole name, not "Le Pelletier"
        {"text": "(0356)-066131", "type": "PHONE"},
    ]
    assert got["redacted_text"] == "Visitor log: [PERSON] signed in. Regards, Ize, tel. [PHONE]"


def test_an_address_cut_short_is_widened_back_to_its_clause() -> None:
    text = "This is Ann Lee, I moved to Stretto Anita, 6 Piano 5, 00029, Vicovaro (RM)."
    got = finish(text, ("Ann Lee", "PERSON"), ("00029, Vicovaro (RM)", "ADDRESS"))
    assert got["spans"][1] == {
        "text": "Stretto Anita, 6 Piano 5, 00029, Vicovaro (RM)",
        "type": "ADDRESS",
    }
    # Not over a value listed as another type, nor over words without a capital or a digit.
    text = "Ship to: Ann Lee, 5 Elm St, Springfield. Or my old place, 5 Oak St."
    got = finish(text, ("Ann Lee", "PERSON"), ("5 Elm St, Springfield", "ADDRESS"),
                 ("5 Oak St", "ADDRESS"))  # fmt: skip
    assert [s["text"] for s in got["spans"]] == ["Ann Lee", "5 Elm St, Springfield", "5 Oak St"]
    # Nor over one word that opens the sentence, nor over a date.
    for text in ("However, 5 Baker Street was sold.", "Born 12.05.1990, 5 Baker Street."):
        assert finish(text, ("5 Baker Street", "ADDRESS"))["spans"][-1]["text"] == "5 Baker Street"


def test_a_span_written_with_placeholders_is_read_off_the_input() -> None:
    text = "Caller: This is Maud, I moved to Jenniferweg 575, 5413 SD, Laren.\nAgent: Noted."
    got = finish(text, ("Maud", "PERSON"), ("I moved to [ADDRESS]", "PHONE"))
    assert got["spans"][1] == {"text": "Jenniferweg 575, 5413 SD, Laren", "type": "ADDRESS"}
    # An address placeholder that ends a span runs to the sentence's end, a number's full stop
    # included, but not an abbreviation's; only after "to", "for", ":"...
    text = "I moved to 5 St. Mary Road, Leeds 79. My new phone is great."
    got = finish(text, ("I moved to [ADDRESS]", "ADDRESS"))
    assert got["spans"] == [{"text": "5 St. Mary Road, Leeds 79", "type": "ADDRESS"}]
    text = "Tenant Ann Lee (born 1990-01-02) gave notice."
    assert finish(text, ("Tenant [PERSON]", "PERSON"))["spans"] == []
    assert (
        finish("my name is Ann Lee and I work late", ("my name is [PERSON]", "PERSON"))["spans"]
        == []
    )  # a name has no sentence's end to run to
    # ... and one between two copied pieces is what lies between them.
    got = finish(text, ("Tenant [PERSON] (born [DATE_OF_BIRTH])", "PERSON"))
    assert got["spans"] == [
        {"text": "Ann Lee", "type": "PERSON"},
        {"text": "1990-01-02", "type": "DATE_OF_BIRTH"},
    ]


def test_a_proven_value_glued_to_another_is_split_off() -> None:
    text = "name,email\nVitor Gomes,francisco59@example.com"
    got = finish(text, ("Vitor Gomes,francisco59@example.com", "PERSON"))
    assert got["spans"] == [
        {"text": "Vitor Gomes", "type": "PERSON"},
        {"text": "francisco59@example.com", "type": "EMAIL"},
    ]
    # What stood beside the value loses its label.
    got = finish("Ann Lee, SSN 443-55-5303", ("Ann Lee, SSN 443-55-5303", "PERSON"))
    assert got["spans"] == [
        {"text": "Ann Lee", "type": "PERSON"},
        {"text": "443-55-5303", "type": "SSN"},
    ]
    # An address may hold a value that looks proven; it stays whole.
    text = "Send it to Unit 4, 12 High St, Leeds, tel 555-123-4567 inside."
    address = "Unit 4, 12 High St, Leeds, tel 555-123-4567"
    assert finish(text, (address, "ADDRESS"))["spans"] == [{"text": address, "type": "ADDRESS"}]


@pytest.mark.parametrize(
    ("redacted", "hidden"),
    [
        ("Mail [PERSON] at [EMAIL] today", [("Ann Lee", "PERSON"), ("ann@x.io", "EMAIL")]),
        ("Mail [PERSON] at [EMAIL] tomorrow", []),  # the copy differs: nothing is known
        ("Mail [PERSON][EMAIL] today", []),  # side by side: where one ends is unknowable
        ("Mail Ann Lee at ann@x.io today", []),
        ("Mail [PERSON] at [EMAIL] and more", []),  # " at " is too short to anchor on
        ("Mail [PERSON] at [EMAIL] today, please", []),
    ],
)
def test_the_models_redactions_are_read_off_an_exact_copy(
    redacted: str, hidden: list[tuple[str, str]]
) -> None:
    assert model_redactions("Mail Ann Lee at ann@x.io today", redacted) == hidden


def test_values_the_model_missed_are_added_once_per_occurrence() -> None:
    text = f"Charged {CARD} twice: {CARD}. Ask a@b.io, not Lee."
    got = finish(text, (CARD, "CREDIT_CARD"), ("Lee", "PERSON"))
    assert got["spans"] == [
        {"text": CARD, "type": "CREDIT_CARD"},
        {"text": "Lee", "type": "PERSON"},
        {"text": CARD, "type": "CREDIT_CARD"},
        {"text": "a@b.io", "type": "EMAIL"},
    ]
    assert (
        got["redacted_text"]
        == "Charged [CREDIT_CARD] twice: [CREDIT_CARD]. Ask [EMAIL], not [PERSON]."
    )


def test_a_value_inside_a_longer_span_is_not_added_again() -> None:
    text = "Ship to 12 High St, a@b.io desk, London"
    got = finish(text, ("12 High St, a@b.io desk, London", "ADDRESS"))
    assert got["spans"] == [{"text": "12 High St, a@b.io desk, London", "type": "ADDRESS"}]


def test_a_value_is_listed_no_more_often_than_it_occurs() -> None:
    got = finish("Ann called.", ("Ann", "PERSON"), ("Ann", "PERSON"))
    assert got["spans"] == [{"text": "Ann", "type": "PERSON"}]


def test_an_output_of_another_shape_is_left_to_the_schema_check() -> None:
    odd = {"redacted_text": "x", "spans": [{"text": 1}]}
    assert finish_spans({"text": "x"}, odd) is odd


@pytest.mark.parametrize("heldout", [False, True])
def test_finish_leaves_every_gold_answer_as_it_is(heldout: bool) -> None:
    # The repairs must never turn a right answer into a wrong one.
    finish_step = BUILTINS["pii"].finish
    assert finish_step is not None
    checked = 0
    for example in piidata.generate(1500, seed=11, heldout=heldout):
        assert example.output is not None
        if any(s["text"] != s["text"].strip() for s in example.output["spans"]):
            continue  # Faker ends a few es_ES street addresses with a space, which finish trims
        assert finish_step(example.input, example.output) == example.output, example
        checked += 1
    assert checked > 1490


def test_a_phone_number_cut_short_or_with_its_label_is_the_whole_number() -> None:
    text = "Regards, Ann Lee, tel. +33 6 36 08 62 72. Or +39 3685525153."
    got = finish(text, ("Ann Lee", "PERSON"), ("tel. +33 6 36 08 62 72", "PERSON"),
                 ("39 3685525153", "PHONE"))  # fmt: skip
    assert got["spans"] == [
        {"text": "Ann Lee", "type": "PERSON"},
        {"text": "+33 6 36 08 62 72", "type": "PHONE"},
        {"text": "+39 3685525153", "type": "PHONE"},
    ]
    assert got["redacted_text"] == "Regards, [PERSON], tel. [PHONE]. Or [PHONE]."


def test_a_phone_in_brackets_leaves_the_bracket_and_is_matched_once() -> None:
    text = "Call Ann (+49 159 04584744) or +1 (620) 230-7597."
    assert recognise(text) == [
        {"text": "+49 159 04584744", "type": "PHONE"},
        {"text": "+1 (620) 230-7597", "type": "PHONE"},
    ]


def test_a_name_loses_the_role_before_it_and_an_address_the_clause() -> None:
    text = "Caller: Tenant Ian Pison said I moved to Jiplaan 79, 8610MT, Eijsden."
    got = finish(text, ("Tenant Ian Pison", "PERSON"),
                 ("I moved to Jiplaan 79, 8610MT, Eijsden", "ADDRESS"))  # fmt: skip
    assert got["spans"] == [
        {"text": "Ian Pison", "type": "PERSON"},
        {"text": "Jiplaan 79, 8610MT, Eijsden", "type": "ADDRESS"},
    ]
    # A role alone, or a name that merely starts like one, stays as the model wrote it.
    assert finish("Hostetler Ann and the Guest", ("Hostetler Ann", "PERSON"), ("Guest", "PERSON"))[
        "spans"
    ] == [{"text": "Hostetler Ann", "type": "PERSON"}, {"text": "Guest", "type": "PERSON"}]


def test_the_models_redactions_are_read_off_the_words_it_copied_around_them() -> None:
    text = "Tenant Ann Lee (born 1990-01-02) gave notice for 5 Elm St, Leeds."
    assert model_redactions(text, "[PERSON] gave notice for [ADDRESS].") == [
        ("Tenant Ann Lee (born 1990-01-02)", "PERSON"),
        ("5 Elm St, Leeds", "ADDRESS"),
    ]
    # Where the copy ends differently, the last placeholder has no end, and is not read.
    assert model_redactions(text, "[PERSON] gave notice for [ADDRESS] on 6 May.") == [
        ("Tenant Ann Lee (born 1990-01-02)", "PERSON")
    ]


def test_a_cell_under_a_pii_column_is_redacted_unless_a_span_holds_it() -> None:
    text = "name,email,phone\nAndrew Smith,kristin14@example.net,0325.1775"
    got = finish(text, ("Andrew Smith", "PERSON"))
    assert got["spans"] == [
        {"text": "Andrew Smith", "type": "PERSON"},
        {"text": "kristin14@example.net", "type": "EMAIL"},  # proven by its form
        {"text": "0325.1775", "type": "PHONE"},  # typed by its column alone
    ]
    assert got["redacted_text"] == "name,email,phone\n[PERSON],[EMAIL],[PHONE]"
    # A cell that cannot be of its column's type is no such value.
    assert finish("name,phone\nAnn Lee,n/a", ("Ann Lee", "PERSON"))["spans"] == [
        {"text": "Ann Lee", "type": "PERSON"}
    ]


def test_an_address_the_model_missed_is_added_and_redacted() -> None:
    address = "76 Mills Pocket, West Richardton, SA, 2616"
    text = f"Tenant Jo Todd (born 25.07.1986) gave notice for {address}."
    got = finish(text, ("Jo Todd", "PERSON"), ("25.07.1986", "DATE_OF_BIRTH"))
    assert got["spans"][-1] == {"text": address, "type": "ADDRESS"}
    assert (
        got["redacted_text"] == "Tenant [PERSON] (born [DATE_OF_BIRTH]) gave notice for [ADDRESS]."
    )


def test_the_models_parts_of_an_address_become_the_one_address() -> None:
    text = "He gave notice for Flat 14 80 Dudley Lees, Amandamouth, NSW, 2964."
    got = finish(text, ("Flat 14 80 Dudley Lees", "ADDRESS"), ("Amandamouth, NSW, 2964", "PERSON"))
    address = "Flat 14 80 Dudley Lees, Amandamouth, NSW, 2964"
    assert got["spans"] == [{"text": address, "type": "ADDRESS"}]
    # A whole address the model mistyped is retyped, with its full stop off.
    text = "I moved to Livdreef 3, 4710 FR, Milheeze.\nAgent: Noted."
    got = finish(text, ("Livdreef 3, 4710 FR, Milheeze.", "PERSON"))
    assert got["spans"] == [{"text": "Livdreef 3, 4710 FR, Milheeze", "type": "ADDRESS"}]


def test_the_models_reading_stands_where_its_span_is_longer_or_proves_another_type() -> None:
    text = "Deliver to 5 Baker Street, London NW1 6XE, UK please"
    got = finish(text, ("5 Baker Street, London NW1 6XE, UK", "ADDRESS"))
    assert [s["text"] for s in got["spans"]] == ["5 Baker Street, London NW1 6XE, UK"]
    text = "Tenant Ann Lee, 5 Baker Street, London, SW1A 1AA, ann@example.com"
    got = finish(text, ("Ann Lee", "PERSON"), ("London, SW1A 1AA, ann@example.com", "EMAIL"))
    assert {"text": "5 Baker Street, London, SW1A 1AA", "type": "ADDRESS"} not in got["spans"]


def test_an_address_is_listed_once_per_occurrence() -> None:
    address = "5 Lee Street, Leeds, LS1 4AP"
    text = f"Old: {address}. New: {address}."
    for listed in range(3):
        got = finish(text, *[(address, "ADDRESS")] * listed)
        assert got["spans"] == [{"text": address, "type": "ADDRESS"}] * 2


def test_a_span_that_also_occurs_outside_the_address_is_kept() -> None:
    text = "Ms Lee of Lee Street: 5 Lee Street, Leeds, LS1 4AP."
    got = finish(text, ("Lee", "PERSON"))
    assert got["spans"] == [
        {"text": "Lee", "type": "PERSON"},
        {"text": "5 Lee Street, Leeds, LS1 4AP", "type": "ADDRESS"},
    ]
