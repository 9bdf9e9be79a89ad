"""Expert parallelism: EP split/merge of expert stacks and lists, EP x TP, and expert names."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ParallelLayoutError
from bridge.parallel._common import bitwise_equal
from bridge.parallel.expert import (
    INNER_KINDS,
    expert_name_to_global,
    expert_name_to_local,
    merge_expert_stack,
    merge_experts,
    split_expert_stack,
    split_experts,
)
from tests.strategies import dtypes, random_bits

FAST = settings(max_examples=50, deadline=None)
EPS = st.sampled_from((1, 2, 4, 8))


@st.composite
def stacks(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    ep = draw(EPS)
    experts = ep * draw(st.integers(1, 2))
    shape = (experts, *draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    return random_bits(shape, draw(dtypes()), draw(st.integers(0, 2**16))), ep


@FAST
@given(case=stacks())
def test_split_experts_pair_on_stacks_and_lists(case: tuple[torch.Tensor, int]) -> None:
    stack, ep = case
    blocks = split_experts(stack, ep=ep)
    assert len(blocks) == ep and bitwise_equal(merge_experts(blocks), stack)
    assert all(
        bitwise_equal(a, b)
        for a, b in zip(split_experts(merge_experts(blocks), ep=ep), blocks, strict=True)
    )
    as_list = list(stack)
    list_blocks = split_experts(as_list, ep=ep)
    assert all(x is y for x, y in zip(merge_experts(list_blocks), as_list, strict=True))
    # EP rank e holds experts e * n/ep .. (e+1) * n/ep - 1, as MCore numbers them
    per_rank = stack.shape[0] // ep
    for e, block in enumerate(list_blocks):
        assert all(x is as_list[e * per_rank + i] for i, x in enumerate(block))


@st.composite
def expert_stacks(draw: st.DrawFn) -> tuple[torch.Tensor, int, int, str]:
    ep, tp = draw(EPS), draw(st.sampled_from((1, 2, 4)))
    inner = draw(st.sampled_from(sorted(INNER_KINDS)))
    experts = ep * draw(st.integers(1, 2))
    rows = tp * draw(st.integers(1, 2)) * (2 if inner == "gated" else 1)
    cols = tp * draw(st.integers(1, 2))
    return (
        random_bits((experts, rows, cols), draw(dtypes()), draw(st.integers(0, 2**16))),
        ep,
        tp,
        inner,
    )


@FAST
@given(case=expert_stacks())
def test_expert_stack_pair_splits_ep_then_the_inner_tp_kind(
    case: tuple[torch.Tensor, int, int, str],
) -> None:
    stack, ep, tp, inner = case
    shards = split_expert_stack(stack, tp=tp, ep=ep, inner=inner)
    assert len(shards) == ep * tp
    assert bitwise_equal(merge_expert_stack(shards, ep=ep, inner=inner), stack)
    again = split_expert_stack(
        merge_expert_stack(shards, ep=ep, inner=inner), tp=tp, ep=ep, inner=inner
    )
    assert all(bitwise_equal(a, b) for a, b in zip(again, shards, strict=True))
    split_inner, _, _ = INNER_KINDS[inner]
    per_rank = stack.shape[0] // ep
    e, t = ep - 1, tp - 1  # the last shard: last EP rank, last TP rank
    expected = torch.stack(
        [split_inner(stack[e * per_rank + i], tp=tp)[t] for i in range(per_rank)]
    )
    assert bitwise_equal(shards[e * tp + t], expected)


@FAST
@given(
    num_experts=st.sampled_from((1, 2, 4, 8, 16)),
    ep=EPS,
    layer=st.integers(0, 3),
    grouped=st.booleans(),
    data=st.data(),
)
def test_expert_names_global_to_local_and_back(
    num_experts: int, ep: int, layer: int, grouped: bool, data: st.DataObject
) -> None:
    if num_experts % ep:
        with pytest.raises(ParallelLayoutError, match=f"num_experts is {num_experts}"):
            expert_name_to_local(
                "decoder.layers.0.mlp.experts.local_experts.0.linear_fc1.weight",
                num_experts=num_experts,
                ep=ep,
            )
        return
    e = data.draw(st.integers(0, num_experts - 1))
    name = (
        f"decoder.layers.{layer}.mlp.experts.linear_fc2.weight{e}"
        if grouped
        else f"decoder.layers.{layer}.mlp.experts.local_experts.{e}.linear_fc1.weight"
    )
    rank, local = expert_name_to_local(name, num_experts=num_experts, ep=ep)
    assert rank == e // (num_experts // ep)
    assert str(e % (num_experts // ep)) in local and f"layers.{layer}." in local
    assert expert_name_to_global(local, rank, num_experts=num_experts, ep=ep) == name


def test_expert_errors_are_explicit() -> None:
    with pytest.raises(ParallelLayoutError, match=r"num_experts is 6.*\(1, 2, 3, 6\)"):
        split_experts(torch.zeros(6, 2), ep=4, name="experts")
    with pytest.raises(ParallelLayoutError, match="not a per-expert parameter"):
        expert_name_to_local("decoder.layers.0.mlp.linear_fc1.weight", num_experts=4, ep=2)
    with pytest.raises(ParallelLayoutError, match="holds only 2 experts"):
        expert_name_to_global("x.experts.local_experts.2.linear_fc1.weight", 0, num_experts=4, ep=2)
    with pytest.raises(ParallelLayoutError, match="Unknown TP kind"):
        split_expert_stack(torch.zeros(2, 2, 2), tp=1, ep=1, inner="qkv")
