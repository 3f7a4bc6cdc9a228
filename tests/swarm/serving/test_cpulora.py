"""The grouped LoRA ops compute what vLLM's own torch ops compute, for every index pattern."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")
lora_ops = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")

from swarm.serving import cpulora  # noqa: E402

HIDDEN, RANK, SLOTS = 64, 8, 4
PATTERNS = {
    "one adapter": [2] * 12,
    "mixed": [0, 0, 1, 3, 3, 3, 1, 0, 2, 2, 1, 0],
    "no adapter (-1)": [-1, -1, 1, 1, -1, 0, 0, 0, -1, 2, 2, 2],
}


@pytest.fixture(autouse=True)
def _vllm_functions() -> None:
    # As install() does, so a fallback reaches vLLM's function.
    cpulora._vllm.update({name: getattr(lora_ops, name) for name in cpulora.REPLACED})


def _run(function: Callable[..., Any], output: Any, *args: Any) -> Any:
    out = output.clone()
    function(args[0], args[1], out, *args[2:])
    return out


def close(ours: Any, theirs: Any) -> None:
    """Equal up to bf16 rounding: vLLM rounds its inputs to the output dtype before it
    multiplies, the grouped ops round once at the end. A wrong adapter, row or slice is off
    by the whole scale of the values."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    scale = theirs.float().abs().max()
    assert scale > 0
    assert (ours.float() - theirs.float()).abs().max() <= 0.01 * scale


def _indices(pattern: str) -> Any:
    return torch.tensor(PATTERNS[pattern], dtype=torch.long)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("four_d", [False, True])
def test_shrink_matches_vllm(pattern: str, four_d: bool) -> None:
    torch.manual_seed(0)
    indices = _indices(pattern)
    x = torch.randn(len(indices), HIDDEN, dtype=torch.bfloat16)
    a = torch.randn(SLOTS, 1, RANK, HIDDEN, dtype=torch.bfloat16)
    a = a if four_d else a.squeeze(1)
    y = torch.zeros(len(indices), RANK, dtype=torch.float32)
    ours = _run(cpulora.bgmv_shrink, y, x, a, indices, 0.5)
    theirs = _run(lora_ops.bgmv_shrink, y, x, a, indices, 0.5)
    close(ours, theirs)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("add_inputs", [False, True])
def test_expand_and_expand_slice_match_vllm(pattern: str, add_inputs: bool) -> None:
    torch.manual_seed(1)
    indices = _indices(pattern)
    x = torch.randn(len(indices), RANK, dtype=torch.float32)
    b = torch.randn(SLOTS, 1, 48, RANK, dtype=torch.bfloat16)
    y = torch.randn(len(indices), 96, dtype=torch.bfloat16)
    close(
        _run(cpulora.bgmv_expand, y, x, b, indices, add_inputs),
        _run(lora_ops.bgmv_expand, y, x, b, indices, add_inputs),
    )
    close(
        _run(cpulora.bgmv_expand_slice, y, x, b, indices, 40, 48, add_inputs),
        _run(lora_ops.bgmv_expand_slice, y, x, b, indices, 40, 48, add_inputs),
    )


def test_the_prefill_forms_expand_per_sequence_indices() -> None:
    torch.manual_seed(2)
    seq_lens = torch.tensor([3, 5, 4])
    per_sequence = torch.tensor([1, -1, 1])
    tokens = int(seq_lens.sum())
    meta = (torch.tensor([0, 3, 8]), seq_lens, per_sequence, 3, 5, tokens)
    x = torch.randn(tokens, HIDDEN, dtype=torch.bfloat16)
    a = torch.randn(SLOTS, 1, RANK, HIDDEN, dtype=torch.bfloat16)
    y = torch.zeros(tokens, RANK, dtype=torch.float32)
    close(
        _run(cpulora.sgmv_shrink, y, x, a, *meta, 1.0),
        _run(lora_ops.sgmv_shrink, y, x, a, *meta, 1.0),
    )
    b = torch.randn(SLOTS, 1, 32, RANK, dtype=torch.bfloat16)
    h = torch.randn(tokens, RANK, dtype=torch.float32)
    z = torch.zeros(tokens, 64, dtype=torch.bfloat16)
    close(
        _run(cpulora.sgmv_expand, z, h, b, *meta, True),
        _run(lora_ops.sgmv_expand, z, h, b, *meta, True),
    )
    close(
        _run(cpulora.sgmv_expand_slice, z, h, b, *meta, 16, 32, True),
        _run(lora_ops.sgmv_expand_slice, z, h, b, *meta, 16, 32, True),
    )


def test_a_call_of_another_shape_goes_to_vllms_function() -> None:
    # One input row for several indices: vLLM's einsum broadcasts it; ours hands it over.
    x = torch.randn(1, HIDDEN)
    a = torch.randn(SLOTS, RANK, HIDDEN)
    indices = torch.tensor([0, 1, 2])
    assert cpulora.products(x, a, indices) is None
    y = torch.zeros(3, RANK)
    close(
        _run(cpulora.bgmv_shrink, y, x, a, indices, 1.0),
        _run(lora_ops.bgmv_shrink, y, x, a, indices, 1.0),
    )


def test_install_replaces_vllms_cpu_ops_once_and_register_is_an_entry_point() -> None:
    punica_cpu = pytest.importorskip("vllm.lora.punica_wrapper.punica_cpu")
    saved = {name: getattr(punica_cpu, name) for name in cpulora.REPLACED}
    try:
        assert cpulora.install()
        assert all(getattr(punica_cpu, n) is getattr(cpulora, n) for n in cpulora.REPLACED)
        assert cpulora.install()  # a second call finds them in place
    finally:
        for name, function in saved.items():
            setattr(punica_cpu, name, function)
    from importlib.metadata import entry_points

    plugins = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert plugins.get("swarm_grouped_cpu_lora") == "swarm.serving.cpulora:register"
