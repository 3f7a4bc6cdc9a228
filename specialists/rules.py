"""A built-in specialist's deterministic rules (finish, schema, check), run under a time budget.

The rules read user text and model text with regular expressions and SQLite. They are written
to run in linear time, but a worker must not trust that: one input that made a rule spin would
stop the event loop, so heartbeats would stop, the message would be reclaimed and the next
worker would spin on it too. Python cannot interrupt a running regular expression (``re`` holds
the GIL and never checks for signals), so a thread is no remedy. The rules run in child
processes instead; a call past its budget kills its child, which is started again on the next
call, and raises :class:`~swarm.errors.RuleBudgetExceeded`.

A specialist with no built-in rules never reaches a child: its output is checked against its
schema in the calling process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from specialists.builtin import BUILTINS
from swarm import schemas
from swarm.errors import RuleBudgetExceeded, UserError

log = logging.getLogger(__name__)

RULE_START_TIMEOUT_S = 60.0
"""How long a child may take to start and import the rules, on a loaded machine."""


class InputTooLong(UserError):
    """A step input longer than ``SWARM_MAX_INPUT_CHARS``: no rule is run on it."""


def input_chars(step_input: dict[str, Any]) -> int:
    """The length of a step input as the rules read it: its JSON text."""
    return len(json.dumps(step_input, ensure_ascii=False, default=str))


def has_rules(name: str) -> bool:
    """Whether the specialist ``name`` has built-in rules beyond its schema."""
    builtin = BUILTINS.get(name)
    return builtin is not None and (builtin.finish is not None or builtin.check is not None)


def apply_rules(
    name: str,
    output_schema: dict[str, Any],
    step_input: dict[str, Any],
    output: Any,
    *,
    finish: bool = True,
) -> tuple[Any, str | None]:
    """The output after the specialist's finish step, and None or why it may not be handed on.

    Schema first, then the specialist's own check. ``finish=False`` checks an answer as it is
    (a teacher's). This is the function a rules child runs; it is plain and synchronous, so
    ``swarm eval`` and the tests call it directly.
    """
    builtin = BUILTINS.get(name)
    if finish and builtin is not None and builtin.finish is not None and isinstance(output, dict):
        output = builtin.finish(step_input, output)
    mismatch = schemas.schema_problem(output_schema, output, root="output")
    if mismatch is not None:
        return output, f"output does not match the schema {mismatch}"
    if builtin is not None and builtin.check is not None:
        return output, builtin.check(step_input, output)
    return output, None


def _serve(conn: Connection) -> None:
    """A rules child: answer ``apply_rules`` calls until the parent closes the pipe."""
    conn.send(("ready", None))
    while True:
        try:
            name, schema, step_input, output, finish = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            reply: tuple[str, Any] = (
                "ok", apply_rules(name, schema, step_input, output, finish=finish)
            )  # fmt: skip
        except Exception as exc:  # a rule's bug fails this step, never the child
            reply = ("error", f"{type(exc).__name__}: {exc}")
        conn.send(reply)


@dataclass(eq=False)
class _Child:
    process: BaseProcess
    conn: Connection

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


class RuleRunner:
    """Runs :func:`apply_rules` in up to ``processes`` children, each call within ``budget_s``.

    Children start on first use (``spawn``: a worker's event loop, threads and Redis
    connections are not copied into them) and are reused; a child that runs past the budget
    or dies is killed and replaced by the next call.
    """

    def __init__(
        self, *, budget_s: float = 5.0, processes: int = 2, max_input_chars: int = 100_000
    ) -> None:
        if budget_s <= 0 or processes < 1:
            raise ValueError("a rule budget must be positive and a runner needs a process")
        self.budget_s = budget_s
        self.max_input_chars = max_input_chars
        self._context = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Child | None] = asyncio.Queue()
        for _ in range(processes):
            self._idle.put_nowait(None)  # a slot whose child starts when first needed
        self._children: set[_Child] = set()

    async def apply(
        self,
        name: str,
        output_schema: dict[str, Any],
        step_input: dict[str, Any],
        output: Any,
        *,
        finish: bool = True,
    ) -> tuple[Any, str | None]:
        """:func:`apply_rules`, off the event loop and within the budget.

        Raises :class:`InputTooLong` for an input over the cap, and
        :class:`~swarm.errors.RuleBudgetExceeded` when the rules run past the budget.
        """
        length = self.check_length(name, step_input)
        if not has_rules(name):
            return apply_rules(name, output_schema, step_input, output, finish=finish)
        child = await self._idle.get()
        healthy = False
        try:
            if child is None:
                child = await asyncio.to_thread(self._start)
            child.conn.send((name, output_schema, step_input, output, finish))
            started = time.monotonic()
            answered = await asyncio.to_thread(child.conn.poll, self.budget_s)
            if not answered:
                log.warning(
                    "%s's rules ran past their %.1f s budget on a %d-character input; "
                    "their process was killed", name, self.budget_s, length,
                )  # fmt: skip
                raise RuleBudgetExceeded(
                    f"the {name} specialist's rules ran past their {self.budget_s:g} s budget "
                    "on this input (SWARM_RULES_BUDGET_S)"
                )
            status, value = child.conn.recv()
            healthy = True
            log.debug("%s's rules took %.3f s", name, time.monotonic() - started)
            if status == "error":
                raise RuntimeError(f"the {name} specialist's rules failed: {value}")
            return value
        except (EOFError, OSError) as exc:
            raise RuntimeError(f"the {name} specialist's rules process died: {exc}") from exc
        finally:
            if not healthy and child is not None:
                # Past its budget, dead, or its caller was cancelled mid-call: its next answer
                # could belong to this call, so it is never reused.
                self._children.discard(child)
                await asyncio.to_thread(child.kill)
                child = None
            self._idle.put_nowait(child)

    def check_length(self, name: str, step_input: dict[str, Any]) -> int:
        """The input's length (:func:`input_chars`); raises :class:`InputTooLong` over the cap."""
        length = input_chars(step_input)
        if length > self.max_input_chars:
            raise InputTooLong(
                f"the input is {length} characters; {name!r} takes at most "
                f"{self.max_input_chars} (SWARM_MAX_INPUT_CHARS)"
            )
        return length

    def _start(self) -> _Child:
        parent, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child_end,), name="swarm-rules", daemon=True
        )
        process.start()
        child_end.close()
        child = _Child(process, parent)
        if not parent.poll(RULE_START_TIMEOUT_S):
            child.kill()
            raise RuntimeError("a rules process did not start within 60 s")
        parent.recv()
        self._children.add(child)
        return child

    def close(self) -> None:
        """Stop every child."""
        for child in list(self._children):
            child.kill()
        self._children.clear()
