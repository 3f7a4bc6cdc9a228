"""The built-in ``entities`` specialist."""

from specialists.builtin.entities.definition import DEFINITION

__all__ = ["DEFINITION"]
