"""What the built-in specialists share: anchoring a value the model wrote to the input."""

from __future__ import annotations

import pytest

from specialists.builtin.text import as_written, miscopied

AGENT = "Caller: This is Samuel, I moved to Ayoubsteeg 67, 7732 GD, Leuth.\nAgent: Noted."


@pytest.mark.parametrize(
    ("text", "value", "stretch"),
    [
        ("Visitor: Alexandre de la Marchand.", "Alexander de la Marchand",
         "Alexandre de la Marchand"),  # the stop is the sentence's
        ("Visitor: Raymond Le Pelletier, host", "Rey Le Pelletier", "Raymond Le Pelletier"),
        ("Regards, Ize, tel. (0356)-066131", "0356-066131", "(0356)-066131"),  # brackets balance
        (AGENT, "I moved to Aweber 67, 7732 GD, Leuth", "I moved to Ayoubsteeg 67, 7732 GD, Leuth"),
        (AGENT, "Samual", "Samuel"),
        (AGENT, "7723", ""),  # too short to tell a miscopy from another number
        (AGENT, "Maria Lopez", ""),  # nothing like it
        ("Quick q - is +39 3685525153 still the best number for Concetta Maccanelli?",
         "Is [PERSON] still the best number for [PERSON]", ""),  # a sentence, not a copy
    ],
)  # fmt: skip
def test_a_miscopied_value_is_anchored_to_the_stretch_it_miscopies(
    text: str, value: str, stretch: str
) -> None:
    assert miscopied(text, value) == stretch


def test_as_written_takes_the_inputs_casing_or_nothing() -> None:
    assert as_written("Mail ANN LEE today", "Ann Lee") == "ANN LEE"
    assert as_written("Mail ANN LEE today", "Ann Le") == "ANN LE"
    assert as_written("Mail ANN LEE today", "Bob") == ""
