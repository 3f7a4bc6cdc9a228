"""Values typed by the CSV column they sit in."""

from __future__ import annotations

import pytest

from specialists.builtin.pii.columns import typed_cells


def test_cells_under_a_pii_header_are_typed_by_their_column() -> None:
    text = 'Export:\nname,email,phone\nAnn Lee,ann@x.io,0325.1775\n"Lee, Bo",,(07)-3637-0496\nend'
    assert typed_cells(text) == [
        ("Ann Lee", "PERSON"),
        ("ann@x.io", "EMAIL"),
        ("0325.1775", "PHONE"),
        ("Lee, Bo", "PERSON"),  # a quoted cell keeps its comma; an empty one is skipped
        ("(07)-3637-0496", "PHONE"),
    ]


def test_only_columns_that_name_pii_count() -> None:
    assert typed_cells("sku,qty,price\n123,2,$10.00") == []
    assert typed_cells("employee_id;full_name;dob\n17;Ann Lee;1990-01-02") == [
        ("Ann Lee", "PERSON"),
        ("1990-01-02", "DATE_OF_BIRTH"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Hi, my name is Ann, call me.",  # prose with commas is no header
        "name,email\nAnn Lee,ann@x.io,extra",  # a row of another width ends the table
        "name,email",  # a header alone
    ],
)
def test_prose_and_rows_of_another_width_are_not_read(text: str) -> None:
    assert typed_cells(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "Could you send me your name, address\nand the rest, please?\nThanks a lot, Bob",
        "Dear Ann,\r\rThanks",  # a lone carriage return is a line break, not a CSV error
    ],
)
def test_prose_is_no_table(text: str) -> None:
    assert typed_cells(text) == []


def test_a_repeated_header_starts_a_new_table_and_a_cell_not_in_the_input_is_left_out() -> None:
    text = 'name,phone\nAnn Lee,555-1234\nname,phone\n"Robert ""Bob"" Smith",555-9876'
    assert typed_cells(text) == [("Ann Lee", "PERSON"), ("555-1234", "PHONE"),
                                 ("555-9876", "PHONE")]  # fmt: skip
