"""An orchestrator in its own process, for crash tests.

It handles messages as usual, except that right after writing the task record it hangs, as if
killed before acknowledging the message: after planning a task and dispatching its first steps
(``submit``), or after recording a step result and dispatching what it unblocked (``result``).
It pushes the task id to ``test:hung`` first so the test knows when to SIGKILL it.

Usage: python crashable_orchestrator.py submit|result  (settings from SWARM_* variables)
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from orchestrator.planner import RulePlanner
from orchestrator.runner import Orchestrator
from swarm.catalog import SpecialistRecord
from swarm.connections import connect
from swarm.messages import Envelope, StepResult, TaskEvent, TaskSubmitted
from swarm.settings import get_settings
from swarm.tasks import TaskRecord

CRASH_AT = {"submit": TaskSubmitted, "result": StepResult}


class Crashable(Orchestrator):
    async def _commit(
        self,
        task: TaskRecord,
        cause: Envelope,
        change: Callable[[TaskRecord], list[TaskEvent] | None],
        catalog: dict[str, SpecialistRecord],
    ) -> TaskRecord:
        task = await super()._commit(task, cause, change, catalog)
        if isinstance(cause.body, CRASH_AT[sys.argv[1]]):
            await self.redis.rpush("test:hung", task.id)
            await asyncio.Event().wait()
        return task


async def main() -> None:
    settings = get_settings()
    redis = await connect(settings.redis_url)
    await Crashable(redis, settings, RulePlanner()).run()


if __name__ == "__main__":
    asyncio.run(main())
