"""The built-in ``sql`` specialist."""

from specialists.builtin.sql.definition import SPECIALIST

__all__ = ["SPECIALIST"]
