"""Cost and latency accounting across every worker: what ``swarm report`` and /metrics read.

Each finished step appends one entry to a bounded Redis stream (its id is the time, so a report
over a window is one XRANGE) and bumps running totals per specialist in one hash (what /metrics
exports), in the same script that publishes the step's result. A step whose worker died after
publishing is not counted again when it is redelivered; one whose worker died during the model
call is run, and paid for, again, but counted once. The figures are operational estimates, not
an invoice.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from swarm import names, scripts
from swarm.connections import RedisClient
from swarm.messages import AccountingEntry, StepResult

if TYPE_CHECKING:
    from swarm.bus import Outgoing

ACCOUNTING_MAXLEN = 200_000
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOTAL_FIELDS = (
    "steps",
    "escalations",
    "failed",
    "cost_usd",
    "all_teacher_cost_usd",
    "prompt_tokens",
    "completion_tokens",
)


# Publish a step's result (the bus's dedupe-then-XADD) and account the step, in one call: a
# result already published (a redelivered step run again) is neither sent nor counted again.
# KEYS: results stream, its dedupe key, accounting stream, totals hash, latency hash; an empty
# results stream means account only. ARGV: payload, maxlen, dedupe ttl, accounting entry,
# accounting maxlen, specialist, escalated, failed, cost, all-teacher cost, prompt tokens,
# completion tokens, the latency sum field, latency seconds, the one bucket field to count (the
# smallest bound the latency fits under; readers cumulate).
_RECORD_SCRIPT = (
    scripts.PUBLISH
    + """
if KEYS[1] ~= '' and not publish(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]) then
  return 0
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'data', ARGV[4])
local p = ARGV[6] .. ':'
redis.call('HINCRBY', KEYS[4], p .. 'steps', 1)
redis.call('HINCRBY', KEYS[4], p .. 'escalations', ARGV[7])
redis.call('HINCRBY', KEYS[4], p .. 'failed', ARGV[8])
redis.call('HINCRBYFLOAT', KEYS[4], p .. 'cost_usd', ARGV[9])
redis.call('HINCRBYFLOAT', KEYS[4], p .. 'all_teacher_cost_usd', ARGV[10])
redis.call('HINCRBY', KEYS[4], p .. 'prompt_tokens', ARGV[11])
redis.call('HINCRBY', KEYS[4], p .. 'completion_tokens', ARGV[12])
redis.call('HINCRBYFLOAT', KEYS[5], ARGV[13], ARGV[14])
redis.call('HINCRBY', KEYS[5], ARGV[15], 1)
return 1
"""
)


async def record_step(
    redis: RedisClient, task_id: str, result: StepResult, *, publish: Outgoing | None = None
) -> bool:
    """Account one finished step, and first publish ``publish`` (its result message) if given,
    all in one round trip. Returns False if that message was published before: then the step
    is not counted again."""
    entry = AccountingEntry(
        task_id=task_id,
        specialist=result.specialist,
        valid=result.valid,
        escalated=result.escalated,
        latency_ms=result.latency_ms,
        cost_usd=result.cost_usd,
        all_teacher_cost_usd=result.all_teacher_cost_usd,
        prompt_tokens=result.tokens.prompt,
        completion_tokens=result.tokens.completion,
    )
    seconds = result.latency_ms / 1000
    series = f"{result.specialist}|{result.adapter_version or 'base'}"
    bucket = next((str(bound) for bound in LATENCY_BUCKETS_S if seconds <= bound), "+Inf")
    keys = [
        publish.stream if publish else "",
        publish.dedupe_key if publish else "",
        names.ACCOUNTING_STREAM,
        names.STATS_KEY,
        names.STEP_LATENCY_KEY,
    ]
    args: list[Any] = [
        publish.payload if publish else b"",
        publish.maxlen if publish else 0,
        publish.dedupe_ttl_s if publish else 0,
        entry.model_dump_json(),
        ACCOUNTING_MAXLEN,
        result.specialist,
        int(result.escalated),
        int(not result.valid),
        repr(result.cost_usd),
        repr(result.all_teacher_cost_usd),
        result.tokens.prompt,
        result.tokens.completion,
        f"{series}|sum",
        repr(seconds),
        f"{series}|{bucket}",
    ]
    return bool(await redis.register_script(_RECORD_SCRIPT)(keys=keys, args=args))


async def latency_histograms(redis: RedisClient) -> dict[tuple[str, str], dict[str, float]]:
    """Fleet-wide step latency histograms: (specialist, adapter version) -> cumulative buckets
    keyed by upper bound (``"0.1"``, ..., ``"+Inf"``) plus ``"sum"``, in seconds."""
    raw: dict[Any, Any] = await redis.hgetall(names.STEP_LATENCY_KEY)
    counts: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in raw.items():
        key = key.decode() if isinstance(key, bytes) else str(key)
        specialist, version, bound = key.rsplit("|", 2)
        counts.setdefault((specialist, version), {})[bound] = float(value)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for series, own in counts.items():
        # Stored per bucket (one increment a step); Prometheus wants each bound's running total.
        running = 0.0
        cumulative = {}
        for bound in (*map(str, LATENCY_BUCKETS_S), "+Inf"):
            running += own.get(bound, 0.0)
            cumulative[bound] = running
        cumulative["sum"] = own.get("sum", 0.0)
        out[series] = cumulative
    return out


async def totals(redis: RedisClient) -> dict[str, dict[str, float]]:
    """Running totals per specialist since Redis was last emptied."""
    raw: dict[Any, Any] = await redis.hgetall(names.STATS_KEY)
    out: dict[str, dict[str, float]] = {}
    for key, value in raw.items():
        key = key.decode() if isinstance(key, bytes) else str(key)
        specialist, _, name = key.rpartition(":")
        if name in TOTAL_FIELDS:
            out.setdefault(specialist, {})[name] = float(value)
    return out


@dataclass
class SpecialistSummary:
    steps: int = 0
    escalations: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    all_teacher_cost_usd: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def escalation_rate(self) -> float:
        return self.escalations / self.steps if self.steps else 0.0


@dataclass(frozen=True)
class Report:
    since_s: float
    tasks: int
    steps: int
    escalation_rate: float
    cost_usd: float
    all_teacher_cost_usd: float
    saved_usd: float
    saved_share: float
    latency_ms_p50: float
    latency_ms_p99: float
    specialists: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def report(redis: RedisClient, *, window_s: float, now: float | None = None) -> Report:
    """Summarise the steps accounted in the last ``window_s`` seconds."""
    end = now if now is not None else time.time()
    start_id = f"{int((end - window_s) * 1000)}-0"
    end_id = f"{int(end * 1000)}"
    entries: Any = await redis.xrange(names.ACCOUNTING_STREAM, min=start_id, max=end_id)
    by_name: dict[str, SpecialistSummary] = {}
    tasks: set[str] = set()
    latencies: list[float] = []
    for _id, fields in entries or []:
        entry = AccountingEntry.model_validate_json(fields.get(b"data") or fields.get("data"))
        summary = by_name.setdefault(entry.specialist, SpecialistSummary())
        summary.steps += 1
        summary.escalations += int(entry.escalated)
        summary.failed += int(not entry.valid)
        summary.cost_usd += entry.cost_usd
        summary.all_teacher_cost_usd += entry.all_teacher_cost_usd
        summary.latencies_ms.append(entry.latency_ms)
        latencies.append(entry.latency_ms)
        tasks.add(entry.task_id)
    steps = sum(s.steps for s in by_name.values())
    cost = sum(s.cost_usd for s in by_name.values())
    counterfactual = sum(s.all_teacher_cost_usd for s in by_name.values())
    return Report(
        since_s=window_s,
        tasks=len(tasks),
        steps=steps,
        escalation_rate=round(sum(s.escalations for s in by_name.values()) / steps, 4)
        if steps
        else 0.0,
        cost_usd=round(cost, 6),
        all_teacher_cost_usd=round(counterfactual, 6),
        saved_usd=round(counterfactual - cost, 6),
        saved_share=round(1 - cost / counterfactual, 4) if counterfactual else 0.0,
        latency_ms_p50=_percentile(latencies, 50),
        latency_ms_p99=_percentile(latencies, 99),
        specialists={
            name: {
                "steps": s.steps,
                "escalation_rate": round(s.escalation_rate, 4),
                "failed": s.failed,
                "cost_usd": round(s.cost_usd, 6),
                "all_teacher_cost_usd": round(s.all_teacher_cost_usd, 6),
                "latency_ms_p50": _percentile(s.latencies_ms, 50),
                "latency_ms_p99": _percentile(s.latencies_ms, 99),
            }
            for name, s in sorted(by_name.items())
        },
    )


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


def render(report_: Report) -> str:
    """The report as a table a person reads."""
    lines = [
        f"last {report_.since_s / 3600:g} h: {report_.tasks} tasks, {report_.steps} steps, "
        f"escalation rate {report_.escalation_rate:.1%}, latency p50 {report_.latency_ms_p50:.0f}"
        f" ms / p99 {report_.latency_ms_p99:.0f} ms",
        f"cost ${report_.cost_usd:.4f} vs all-teacher ${report_.all_teacher_cost_usd:.4f} "
        f"(saved ${report_.saved_usd:.4f}, {report_.saved_share:.1%})",
        "",
        "| specialist | steps | escalated | failed | cost $ | all-teacher $ | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report_.specialists.items():
        lines.append(
            f"| {name} | {s['steps']} | {s['escalation_rate']:.1%} | {s['failed']} | "
            f"{s['cost_usd']:.4f} | {s['all_teacher_cost_usd']:.4f} | {s['latency_ms_p50']:.0f} | "
            f"{s['latency_ms_p99']:.0f} |"
        )
    return "\n".join(lines)
