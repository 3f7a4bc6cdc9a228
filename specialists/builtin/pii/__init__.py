"""The built-in ``pii`` specialist."""

from specialists.builtin.pii.definition import SPECIALIST

__all__ = ["SPECIALIST"]
