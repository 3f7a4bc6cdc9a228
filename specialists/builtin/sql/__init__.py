"""The built-in ``sql`` specialist."""

from specialists.builtin.sql.definition import DEFINITION

__all__ = ["DEFINITION"]
