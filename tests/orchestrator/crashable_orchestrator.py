"""An orchestrator in its own process, for crash tests.

It handles messages as usual, except that where it would dispatch steps it hangs instead, as if
killed between two writes: after planning a task (``submit``) or after recording a step result
(``result``). It pushes the task id to ``test:hung`` first so the test knows when to SIGKILL it.

Usage: python crashable_orchestrator.py submit|result  (settings from SWARM_* variables)
"""

from __future__ import annotations

import asyncio
import sys

from orchestrator.planner import RulePlanner
from orchestrator.runner import Orchestrator
from swarm.bus import connect
from swarm.messages import Envelope, StepResult, TaskSubmitted
from swarm.settings import get_settings

CRASH_AT = {"submit": TaskSubmitted, "result": StepResult}


class Crashable(Orchestrator):
    async def _dispatch(self, task_id: str, cause: Envelope) -> None:
        if isinstance(cause.body, CRASH_AT[sys.argv[1]]):
            await self.redis.rpush("test:hung", task_id)
            await asyncio.Event().wait()
        await super()._dispatch(task_id, cause)


async def main() -> None:
    settings = get_settings()
    redis = await connect(settings.redis_url)
    await Crashable(redis, settings, RulePlanner()).run()


if __name__ == "__main__":
    asyncio.run(main())
