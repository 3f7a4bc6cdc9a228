"""The orchestrator's protocol, driven by hand: the test sends what the API and workers send."""

from __future__ import annotations

from redis.asyncio import Redis

from orchestrator.runner import step_request_id
from swarm import names
from swarm.messages import Cancel, StepSpec, TaskSubmitted, envelope

from taskdriver import Driver, Start, settled, spec_record

TEXT = "Maria Lopez of Acme Corp emailed from Berlin."
REDACTED = "[PERSON] of Acme Corp emailed from Berlin."
SQL_FIELDS = {"question": "How many customers?", "schema": "CREATE TABLE customers (id INT);"}


def linear(*specialists: str) -> list[StepSpec]:
    return [
        StepSpec(id=f"s{i}", specialist=s, depends_on=[f"s{i - 1}"] if i > 1 else [])
        for i, s in enumerate(specialists, start=1)
    ]


async def test_a_chain_hands_each_output_to_the_next_step(
    driver: Driver, start_orchestrator: Start
) -> None:
    start_orchestrator()
    task_id = await driver.submit({"text": TEXT, **SQL_FIELDS}, linear("pii", "entities", "sql"))
    (pii,) = await driver.wait_requests("pii", task_id)
    assert pii.input == {"text": TEXT}
    # A step carries its own input only: the task input is not copied into every request.
    assert pii.task_input == "" and pii.artifacts == {}
    await driver.answer(task_id, "s1", "pii", {"redacted_text": REDACTED})
    (entities,) = await driver.wait_requests("entities", task_id)
    assert entities.input == {"text": REDACTED}  # the manifest's handoff
    await driver.answer(task_id, "s2", "entities", {"entities": "Acme Corp"})
    (sql,) = await driver.wait_requests("sql", task_id)
    assert sql.input == SQL_FIELDS  # the task input still reaches later steps
    await driver.answer(task_id, "s3", "sql", {"sql": "SELECT 1"})
    task = await driver.finished(task_id)
    assert task.state == "completed" and task.plan_source == "explicit"
    assert task.result == {"sql": "SELECT 1"}
    assert [s.status for s in task.steps] == ["completed"] * 3
    assert all(s.latency_ms == 12.5 and s.attempts == 1 and s.finished_at for s in task.steps)
    kinds = [e.kind for e in await driver.events(task_id)]
    assert kinds == ["state", "state"] + ["step.started", "step.completed"] * 3 + ["state"]


async def test_a_diamond_runs_its_independent_steps_at_once(
    driver: Driver, start_orchestrator: Start
) -> None:
    await driver.register(
        spec_record("split", ["text"], ["text"]),
        spec_record("left", ["text"], ["left"]),
        spec_record("right", ["text"], ["right"]),
        spec_record("join", ["left", "right"], ["joined"]),
    )
    plan = [
        StepSpec(id="a", specialist="split"),
        StepSpec(id="b", specialist="left", depends_on=["a"]),
        StepSpec(id="c", specialist="right", depends_on=["a"]),
        StepSpec(id="d", specialist="join", depends_on=["b", "c"]),
    ]
    start_orchestrator()
    task_id = await driver.submit("raw", plan)
    await driver.wait_requests("split", task_id)
    await driver.answer(task_id, "a", "split", {"text": "clean"})
    # Both middle steps go out before either is answered.
    (left,) = await driver.wait_requests("left", task_id)
    (right,) = await driver.wait_requests("right", task_id)
    assert left.input == right.input == {"text": "clean"}
    task = await driver.task(task_id)
    assert [s.status for s in task.steps] == ["completed", "running", "running", "pending"]
    await driver.answer(task_id, "b", "left", {"left": "L"})
    await settled(driver.redis)
    assert await driver.requests("join", task_id) == []  # still waiting for c
    await driver.answer(task_id, "c", "right", {"right": "R"})
    (join,) = await driver.wait_requests("join", task_id)
    assert join.input == {"left": "L", "right": "R"}
    assert join.artifacts == {}  # its input was built from them
    await driver.answer(task_id, "d", "join", {"joined": "LR"})
    task = await driver.finished(task_id)
    assert task.state == "completed" and task.result == {"joined": "LR"}


async def test_a_duplicate_result_is_ignored(
    driver: Driver, start_orchestrator: Start, redis: Redis
) -> None:
    start_orchestrator()
    task_id = await driver.submit(TEXT, linear("pii", "entities"))
    await driver.wait_requests("pii", task_id)
    await driver.answer(task_id, "s1", "pii", {"redacted_text": REDACTED})
    await driver.wait_requests("entities", task_id)
    # A second answer to the same step under a new message id gets past the bus's dedupe.
    await driver.answer(task_id, "s1", "pii", {"redacted_text": "something else"})
    await settled(redis)
    task = await driver.task(task_id)
    assert task.steps[0].output == {"redacted_text": REDACTED}
    assert len(await driver.requests("entities", task_id)) == 1
    await driver.answer(task_id, "s2", "entities", {"entities": "x"})
    await driver.answer(task_id, "s2", "entities", {"entities": "y"})
    task = await driver.finished(task_id)
    await settled(redis)
    events = await driver.events(task_id)
    assert sum(e.kind == "step.completed" for e in events) == 2
    assert sum(e.state == "completed" for e in events) == 1
    assert (await driver.task(task_id)).result in ({"entities": "x"}, {"entities": "y"})


async def test_a_redelivered_submission_plans_and_dispatches_once(
    driver: Driver, start_orchestrator: Start, redis: Redis
) -> None:
    start_orchestrator()
    task_id = await driver.submit(TEXT, goal="redact it, then extract")
    # The same submission again under a new message id, as after a producer retry.
    body = TaskSubmitted(input=TEXT, goal="redact it, then extract")
    await driver.bus.publish(names.TASKS_STREAM, envelope(task_id, body))
    await driver.wait_requests("pii", task_id)
    await settled(redis)
    task = await driver.task(task_id)
    assert task.plan_source == "rules" and [s.specialist for s in task.steps] == [
        "pii",
        "entities",
    ]
    assert len(await driver.requests("pii", task_id)) == 1
    events = await driver.events(task_id)
    assert sum(e.state == "working" for e in events) == 1
    (request,) = await driver.requests("pii", task_id)
    assert request.id == step_request_id(task_id, "s1")


async def test_a_failed_step_fails_the_task_and_stops_its_siblings(
    driver: Driver, start_orchestrator: Start, redis: Redis
) -> None:
    plan = [
        StepSpec(id="redact", specialist="pii"),
        StepSpec(id="ents", specialist="entities", depends_on=["redact"]),
        StepSpec(id="query", specialist="sql", depends_on=["redact"]),
        StepSpec(id="again", specialist="entities", depends_on=["ents", "query"]),
    ]
    start_orchestrator()
    task_id = await driver.submit({"text": TEXT, **SQL_FIELDS}, plan)
    await driver.wait_requests("pii", task_id)
    await driver.answer(task_id, "redact", "pii", {"redacted_text": REDACTED})
    await driver.wait_requests("sql", task_id)
    await driver.answer(task_id, "ents", "entities", error="invalid output: no entities")
    task = await driver.finished(task_id)
    assert task.state == "failed"
    assert task.reason == "step 'ents' (entities) failed: invalid output: no entities"
    statuses = {s.id: s.status for s in task.steps}
    assert statuses == {
        "redact": "completed",
        "ents": "failed",
        "query": "canceled",
        "again": "skipped",
    }
    assert await redis.exists(names.canceled_key(task_id))  # the sql worker stops
    # The canceled sibling's late answer changes nothing.
    await driver.answer(task_id, "query", "sql", {"sql": "SELECT 1"})
    await settled(redis)
    assert (await driver.task(task_id)).step("query").status == "canceled"


async def test_a_result_after_the_bus_failed_the_task_changes_nothing(
    driver: Driver, start_orchestrator: Start, redis: Redis
) -> None:
    # The orchestrator keeps its own copy of the record after dispatching both branches; the
    # bus then fails the task beside the document (a step request that kept killing workers),
    # leaving the other branch marked running. Its late result must not revive the task.
    plan = [
        StepSpec(id="a", specialist="pii"),
        StepSpec(id="b", specialist="entities"),
    ]
    start_orchestrator()
    task_id = await driver.submit(TEXT, plan)
    await driver.wait_requests("pii", task_id)
    await driver.wait_requests("entities", task_id)
    await settled(redis)
    request = (await driver.requests("pii", task_id))[0]
    await driver.bus.dead_letter(
        stream=names.steps_stream("pii"),
        group=names.WORKERS_GROUP,
        entry_id="1-0",
        fields={b"m": request.encode()},
        reason="delivered 5 times without an ack",
        deliveries=5,
    )
    await driver.answer(task_id, "b", "entities", {"entities": "Acme Corp"})
    await settled(redis)
    task = await driver.task(task_id)
    assert (task.state, task.reason) == ("failed", "delivered 5 times without an ack")
    assert task.step("b").status != "completed"
    assert await redis.hget(names.task_key(task_id), "state") == b"failed"
    kinds = [e.kind for e in await driver.events(task_id)]
    assert "step.completed" not in kinds
    assert [e.state for e in await driver.events(task_id) if e.kind == "state"][-1] == "failed"
    assert await redis.exists(names.canceled_key(task_id))  # the workers drop its steps


async def test_a_missing_input_field_fails_the_step_with_what_to_add(
    driver: Driver, start_orchestrator: Start
) -> None:
    start_orchestrator()
    task_id = await driver.submit(TEXT, linear("pii", "sql"))
    await driver.wait_requests("pii", task_id)
    await driver.answer(task_id, "s1", "pii", {"redacted_text": REDACTED})
    task = await driver.finished(task_id)
    reason = (
        "step 's2' (sql) needs input fields 'question' and 'schema'; add them to the task input"
    )
    assert (task.state, task.reason) == ("failed", reason)
    assert task.steps[1].status == "failed" and task.steps[1].error == reason
    assert await driver.requests("sql", task_id) == []


async def test_an_overdue_task_fails_and_its_workers_are_told(
    driver: Driver, start_orchestrator: Start, redis: Redis
) -> None:
    start_orchestrator()
    task_id = await driver.submit(TEXT, linear("pii", "entities"), deadline_s=0.4)
    await driver.wait_requests("pii", task_id)
    assert await redis.zscore(names.DEADLINES_KEY, task_id)
    task = await driver.finished(task_id, timeout_s=5)
    assert (task.state, task.reason) == ("failed", "deadline exceeded after 0.4s")
    assert [s.status for s in task.steps] == ["canceled", "skipped"]
    assert await redis.exists(names.canceled_key(task_id))
    assert await redis.zcard(names.DEADLINES_KEY) == 0


async def test_cancel_ends_the_task_and_drops_late_results(
    driver: Driver, start_orchestrator: Start, redis: Redis
) -> None:
    start_orchestrator()
    task_id = await driver.submit(TEXT, linear("pii", "entities"), deadline_s=60)
    await driver.wait_requests("pii", task_id)
    await driver.cancel(task_id)
    await settled(redis)
    task = await driver.task(task_id)
    assert (task.state, task.reason) == ("canceled", "canceled by request")
    assert [s.status for s in task.steps] == ["canceled", "canceled"]
    assert await redis.zcard(names.DEADLINES_KEY) == 0  # the sweeper will not touch it
    await driver.answer(task_id, "s1", "pii", {"redacted_text": REDACTED})
    await settled(redis)
    assert (await driver.task(task_id)).state == "canceled"
    assert await driver.requests("entities", task_id) == []
    assert (
        sum(e.kind == "state" and e.state == "canceled" for e in await driver.events(task_id)) == 1
    )


async def test_a_plan_over_the_step_limit_is_rejected(
    driver: Driver, start_orchestrator: Start
) -> None:
    start_orchestrator(max_steps=2)
    task = await driver.finished(await driver.submit(TEXT, linear("pii", "entities", "pii")))
    assert task.state == "rejected"
    assert task.reason == "the plan has 3 steps; at most 2 are allowed"


async def test_a_plan_naming_an_unregistered_specialist_is_rejected(
    driver: Driver, start_orchestrator: Start
) -> None:
    start_orchestrator()
    task = await driver.finished(await driver.submit(TEXT, linear("pii", "ocr")))
    assert task.state == "rejected"
    assert "no specialist named 'ocr'" in (task.reason or "")


async def test_an_unplannable_goal_is_rejected_with_what_to_do(
    driver: Driver, start_orchestrator: Start
) -> None:
    start_orchestrator()
    task = await driver.finished(await driver.submit(TEXT, goal="paint a picture"))
    assert task.state == "rejected"
    assert "pass an explicit plan" in (task.reason or "")


async def test_two_orchestrators_complete_every_task_once(
    driver: Driver, start_orchestrator: Start, redis: Redis
) -> None:
    start_orchestrator()
    start_orchestrator()
    ids = [await driver.submit(TEXT, linear("pii", "entities")) for _ in range(30)]
    for task_id in ids:
        await driver.wait_requests("pii", task_id)
        await driver.answer(task_id, "s1", "pii", {"redacted_text": REDACTED})
    for task_id in ids:
        await driver.wait_requests("entities", task_id)
        await driver.answer(task_id, "s2", "entities", {"entities": task_id})
    tasks = [await driver.finished(task_id) for task_id in ids]
    await settled(redis)
    assert all(t.state == "completed" and t.result == {"entities": t.id} for t in tasks)
    for task_id in ids:
        events = await driver.events(task_id)
        assert sum(e.kind == "step.started" for e in events) == 2
        assert sum(e.kind == "step.completed" for e in events) == 2
        assert sum(e.state == "completed" for e in events) == 1
        assert len(await driver.requests("entities", task_id)) == 1


async def test_a_result_for_an_unknown_task_is_dropped_quietly(
    driver: Driver, start_orchestrator: Start, redis: Redis
) -> None:
    start_orchestrator()
    await driver.answer("no-such-task", "s1", "pii", {"redacted_text": REDACTED})
    await driver.bus.publish(names.RESULTS_STREAM, envelope("no-such-task", Cancel()))
    await settled(redis)
    assert await redis.xlen(names.DEAD_LETTER_STREAM) == 0
    assert not await redis.exists(names.task_key("no-such-task"))


async def test_a_specialist_registered_just_now_is_found(
    driver: Driver, start_orchestrator: Start
) -> None:
    start_orchestrator()
    first = await driver.submit(TEXT, linear("pii"))
    await driver.wait_requests("pii", first)  # the orchestrator has read (and cached) the catalog
    await driver.register(spec_record("summary", ["text"], ["summary"]))
    task_id = await driver.submit(TEXT, linear("summary"))
    (request,) = await driver.wait_requests("summary", task_id)
    assert request.input == {"text": TEXT}
