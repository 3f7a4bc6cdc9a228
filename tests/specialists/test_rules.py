"""The built-in rules under hostile input: bounded patterns, a time budget, a length cap."""

from __future__ import annotations

import importlib
import re
import re._constants as sre
import re._parser as sre_parse
import time
from typing import Any

import pytest

from specialists.builtin import BUILTINS
from specialists.builtin.text import pattern
from specialists.rules import InputTooLong, RuleRunner, apply_rules
from swarm.errors import RuleBudgetExceeded

from adversarial import PREFIXES, SIZE, UNITS, corpus

RULE_MODULES = (
    "pii.finish",
    "pii.addresses",
    "pii.columns",
    "definition",
    "entities.finish",
    "sql.checks",
    "sql.ddl",
)
BUDGET_S = 5.0
"""The default ``SWARM_RULES_BUDGET_S``: every adversarial input must finish well within it."""


def _unbounded(tree: Any) -> int:
    count = 0
    for op, av in tree:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            count += (av[1] == sre.MAXREPEAT) + _unbounded(av[2])
        elif op is sre.SUBPATTERN:
            count += _unbounded(av[-1])
        elif op is sre.ATOMIC_GROUP:
            count += _unbounded(av)
        elif op is sre.BRANCH:
            count += sum(_unbounded(branch) for branch in av[1])
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            count += _unbounded(av[1])
    return count


def test_every_pattern_of_the_rules_has_bounded_repetition() -> None:
    patterns = {
        f"{module}.{name}": value
        for module in RULE_MODULES
        for name, value in vars(importlib.import_module(f"specialists.builtin.{module}")).items()
        if isinstance(value, re.Pattern)
    }
    assert len(patterns) > 30
    unbounded = [name for name, p in patterns.items() if _unbounded(sre_parse.parse(p.pattern))]
    assert unbounded == []


@pytest.mark.parametrize(
    ("source", "bounded"),
    [
        (r"a*b+c?", r"a{0,9}b{1,9}c?"),
        (r"d{2,}e{3}f{1,4}", r"d{2,9}e{3}f{1,4}"),
        (r"(?:x)*?y+?z*+", r"(?:x){0,9}?y{1,9}?z{0,9}+"),  # lazy and possessive marks stay
        (r"\d{1,15}+\)?", r"\d{1,15}+\)?"),
        (r"\(?\d+\)?", r"\(?\d{1,9}\)?"),
    ],
)
def test_pattern_bounds_each_unbounded_repetition(source: str, bounded: str) -> None:
    assert pattern(source, most=9).pattern == bounded


@pytest.mark.parametrize("source", [r"[*+]", r"\*\+", r"[^]*+]", r"(?P<n>a)", r"a{3}", r"[\]*]"])
def test_pattern_leaves_literals_and_classes_alone(source: str) -> None:
    assert pattern(source, most=9).pattern == source


def test_the_42_byte_phone_number_is_read_at_once() -> None:
    # Once "(?:[ ./-]?\(?\d+\)?)+" took time doubling with each digit: 34 digits hung a worker.
    started = time.perf_counter()
    apply_rules("pii", BUILTINS["pii"].manifest.output_schema, {"text": "Call +1" + "1" * 34 + "x"},
                {"redacted_text": "Call [PHONE]", "spans": []})  # fmt: skip
    assert time.perf_counter() - started < 0.1


def _outputs(name: str, text: str) -> list[dict[str, Any]]:
    """Model answers that make the finish steps work hardest: long spans, values from the text."""
    words = " ".join(text.split()[:3]) or "x"
    if name == "pii":
        return [
            {"redacted_text": text, "spans": [{"text": text[5:300], "type": "ADDRESS"},
                                              {"text": words, "type": "PERSON"}]},
            {"redacted_text": "[PERSON]", "spans": []},
        ]  # fmt: skip
    if name == "entities":
        return [{"entities": [{"text": text[5:300], "type": "LOCATION"},
                              {"text": words, "type": "PERSON"}]}]  # fmt: skip
    return [{"sql": "SELECT a FROM t"}, {"sql": text[:5000]}]


def _input(name: str, text: str) -> dict[str, Any]:
    if name == "sql":
        return {"question": text, "schema": "CREATE TABLE t (a INT);"}
    return {"text": text}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_adversarial_input_ends_within_the_budget(name: str) -> None:
    assert len(UNITS) * len(PREFIXES) > 200
    schema = BUILTINS[name].manifest.output_schema
    slowest = (0.0, "")
    # Every unit, after the two prefixes that reach most rules; 100 KB each.
    for text in corpus(SIZE, prefixes=("", "I moved to ")):
        for output in _outputs(name, text):
            started = time.perf_counter()
            apply_rules(name, schema, _input(name, text), output)
            slowest = max(slowest, (time.perf_counter() - started, text[:30]))
    assert slowest[0] < BUDGET_S / 2, f"{slowest[0]:.2f} s on {slowest[1]!r}..."


async def test_a_runner_past_its_budget_kills_the_rules_and_serves_the_next_call() -> None:
    runner = RuleRunner(budget_s=0.05, processes=1, max_input_chars=10**6)
    schema = BUILTINS["pii"].manifest.output_schema
    try:
        slow = {"text": "I moved to " + "12 Main St, " * 20_000}  # seconds of address reading
        with pytest.raises(RuleBudgetExceeded, match=r"ran past their 0\.05 s budget"):
            await runner.apply("pii", schema, slow, {"redacted_text": "", "spans": []})
        runner.budget_s = 30.0  # the next call gets a fresh process, with room to start it
        output, problem = await runner.apply(
            "pii", schema, {"text": "Mail ann@x.io"}, {"redacted_text": "Mail", "spans": []}
        )
        assert problem is None
        assert output == {
            "redacted_text": "Mail [EMAIL]", "spans": [{"text": "ann@x.io", "type": "EMAIL"}]
        }  # fmt: skip
    finally:
        runner.close()


async def test_a_runner_refuses_an_input_over_the_cap_without_starting_a_process() -> None:
    runner = RuleRunner(max_input_chars=100)
    with pytest.raises(InputTooLong, match="at most 100"):
        await runner.apply("pii", {}, {"text": "a" * 200}, {})
    assert runner._children == set()


async def test_a_specialist_without_rules_is_checked_in_process() -> None:
    runner = RuleRunner()
    schema = {"type": "object", "required": ["x"]}
    assert (await runner.apply("custom", schema, {"text": "a"}, {"x": 1}))[1] is None
    _, problem = await runner.apply("custom", schema, {"text": "a"}, {})
    assert problem is not None and "'x' is a required property" in problem
    assert runner._children == set()
