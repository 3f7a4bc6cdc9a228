"""The built-in ``entities`` specialist."""

from specialists.builtin.entities.definition import SPECIALIST

__all__ = ["SPECIALIST"]
