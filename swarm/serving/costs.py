"""What a step costs: local GPU time, teacher tokens, and the all-teacher counterfactual.

Local cost is priced from the GPU-hour price and the measured serving throughput
(``SWARM_LOCAL_GPU_USD_PER_HOUR`` / ``SWARM_LOCAL_TOKENS_PER_S``): a token costs its share of a
GPU-second. The counterfactual prices the same step's tokens at the teacher's rates, which is
what sending everything to the frontier model would have cost (token counts differ a little
between tokenizers; this is an estimate and is labelled as one).
"""

from __future__ import annotations

from dataclasses import dataclass

from swarm.settings import Settings


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input_usd_per_mtok: float
    output_usd_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok
        ) / 1e6


def teacher_prices(settings: Settings) -> Prices:
    return Prices(settings.teacher_input_usd_per_mtok, settings.teacher_output_usd_per_mtok)


def local_cost_usd(settings: Settings, prompt_tokens: int, completion_tokens: int) -> float:
    """GPU time of the tokens at the measured throughput, priced per GPU-hour."""
    seconds = (prompt_tokens + completion_tokens) / max(settings.local_tokens_per_s, 1e-9)
    return seconds * settings.local_gpu_usd_per_hour / 3600


def all_teacher_cost_usd(settings: Settings, prompt_tokens: int, completion_tokens: int) -> float:
    """What the teacher would have charged for the same step."""
    return teacher_prices(settings).cost(prompt_tokens, completion_tokens)
