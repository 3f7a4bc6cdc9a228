"""The built-in ``pii`` specialist."""

from specialists.builtin.pii.definition import DEFINITION

__all__ = ["DEFINITION"]
