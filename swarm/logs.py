"""Logging for every swarm process: plain text, or one JSON object a line carrying the task id.

``SWARM_LOG_FORMAT=json`` makes each record a JSON object with the time, level, logger, message,
the task id and step id of the work in hand (set with :func:`task_context`) and the trace id, so
a log pipeline can follow one task across processes.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from opentelemetry import trace

_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)
_step_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("step_id", default=None)


@contextlib.contextmanager
def task_context(task_id: str | None, step_id: str | None = None) -> Iterator[None]:
    """Log records made inside the block carry this task (and step) id."""
    task_token = _task_id.set(task_id)
    step_token = _step_id.set(step_id)
    try:
        yield
    finally:
        _step_id.reset(step_token)
        _task_id.reset(task_token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        task_id, step_id = _task_id.get(), _step_id.get()
        if task_id:
            entry["task_id"] = task_id
        if step_id:
            entry["step_id"] = step_id
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = f"{context.trace_id:032x}"
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


QUIET_LIBRARIES = ("httpx", "httpcore")


def setup_logging(level: str, fmt: str = "text") -> None:
    """Configure the root logger on stderr, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The HTTP clients log every request at INFO: the registry's once-a-second poll of vLLM
    # and every model call would drown what swarm itself says. Their warnings still show, and
    # at DEBUG everything does.
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for chatty in QUIET_LIBRARIES:
        logging.getLogger(chatty).setLevel(quiet)
