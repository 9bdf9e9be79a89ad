"""The dense TP kinds as split/merge pairs: inverses both ways, bit-exact, and their errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ParallelLayoutError
from bridge.parallel._common import bitwise_equal
from bridge.parallel.tp import (
    merge_column,
    merge_gated,
    merge_qkv,
    merge_replicated,
    merge_row,
    split_column,
    split_gated,
    split_qkv,
    split_replicated,
    split_row,
)
from tests.strategies import dtypes, random_bits

TPS = st.sampled_from((1, 2, 4, 8, 3))
SEEDS = st.integers(0, 2**16)
FAST = settings(max_examples=60, deadline=None)


def _equal_lists(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(bitwise_equal(x, y) for x, y in zip(a, b, strict=True))


@st.composite
def column_cases(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    tp = draw(TPS)
    rows = tp * draw(st.integers(1, 3))
    trailing = draw(st.lists(st.integers(1, 4), max_size=2))
    return random_bits((rows, *trailing), draw(dtypes()), draw(SEEDS)), tp


@FAST
@given(case=column_cases())
def test_column_split_then_merge_is_identity(case: tuple[torch.Tensor, int]) -> None:
    full, tp = case
    shards = split_column(full, tp=tp)
    assert len(shards) == tp and all(s.shape[0] == full.shape[0] // tp for s in shards)
    assert bitwise_equal(merge_column(shards), full)


@FAST
@given(case=column_cases())
def test_column_merge_then_split_returns_the_shards(case: tuple[torch.Tensor, int]) -> None:
    block, tp = case
    shards = [random_bits(tuple(block.shape), block.dtype, seed) for seed in range(tp)]
    assert _equal_lists(split_column(merge_column(shards), tp=tp), shards)


@st.composite
def row_cases(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    tp = draw(TPS)
    dtype, seed = draw(dtypes()), draw(SEEDS)
    if draw(st.booleans()):  # a row-parallel bias: 1-D, replicated
        return random_bits((draw(st.integers(1, 6)),), dtype, seed), tp
    shape = (
        draw(st.integers(1, 4)),
        tp * draw(st.integers(1, 3)),
        *draw(st.lists(st.integers(1, 3), max_size=1)),
    )
    return random_bits(shape, dtype, seed), tp


@FAST
@given(case=row_cases())
def test_row_split_then_merge_is_identity(case: tuple[torch.Tensor, int]) -> None:
    full, tp = case
    shards = split_row(full, tp=tp)
    if full.dim() == 1:
        assert all(s is full for s in shards)
    else:
        assert all(s.shape[1] == full.shape[1] // tp for s in shards)
    assert bitwise_equal(merge_row(shards), full)


@FAST
@given(case=row_cases())
def test_row_merge_then_split_returns_the_shards(case: tuple[torch.Tensor, int]) -> None:
    block, tp = case
    if block.dim() == 1:
        shards = [block] * tp
    else:
        shards = [random_bits(tuple(block.shape), block.dtype, seed) for seed in range(tp)]
    assert _equal_lists(split_row(merge_row(shards), tp=tp), shards)


@FAST
@given(full=st.integers(0, 2**16).map(lambda s: random_bits((3, 2), torch.bfloat16, s)), tp=TPS)
def test_replicated_pair_is_identity_both_ways(full: torch.Tensor, tp: int) -> None:
    shards = split_replicated(full, tp=tp)
    assert len(shards) == tp
    assert bitwise_equal(merge_replicated(shards), full)
    assert _equal_lists(split_replicated(merge_replicated(shards), tp=tp), shards)


@FAST
@given(
    full=st.integers(0, 2**16).map(lambda s: random_bits((4,), torch.float32, s)),
    tp=st.sampled_from((2, 4)),
)
def test_replicated_merge_rejects_a_drifted_copy_and_names_the_parameter(
    full: torch.Tensor, tp: int
) -> None:
    shards = [full.clone() for _ in range(tp)]
    bad = shards[-1].view(torch.int32).clone()
    bad[0] ^= 1  # flip the lowest bit of one element: the smallest possible drift
    shards[-1] = bad.view(torch.float32)
    with pytest.raises(
        ParallelLayoutError, match=r"decoder\.final_layernorm\.weight.*TP rank " + str(tp - 1)
    ):
        merge_replicated(shards, name="decoder.final_layernorm.weight")


def test_replicated_merge_compares_bits_so_identical_nans_are_equal() -> None:
    nan = torch.full((3,), float("nan"))
    assert bitwise_equal(merge_replicated([nan, nan.clone()]), nan)


@st.composite
def qkv_cases(draw: st.DrawFn) -> tuple[torch.Tensor, int, int, int, int]:
    tp = draw(st.sampled_from((1, 2, 4, 8)))
    groups = tp * draw(st.sampled_from((1, 2)))
    heads_per_group = draw(st.sampled_from((1, 2, 4)))
    head_dim = draw(st.sampled_from((1, 2, 4)))
    rows = groups * (heads_per_group + 2) * head_dim
    shape = (rows,) if draw(st.booleans()) else (rows, draw(st.integers(1, 4)))
    return random_bits(shape, draw(dtypes()), draw(SEEDS)), tp, groups, heads_per_group, head_dim


@FAST
@given(case=qkv_cases())
def test_qkv_pair_is_identity_and_each_rank_holds_whole_groups(
    case: tuple[torch.Tensor, int, int, int, int],
) -> None:
    full, tp, groups, per_group, head_dim = case
    shards = split_qkv(full, tp=tp, num_query_groups=groups)
    assert bitwise_equal(merge_qkv(shards, num_query_groups=groups), full)
    assert _equal_lists(
        split_qkv(merge_qkv(shards, num_query_groups=groups), tp=tp, num_query_groups=groups),
        shards,
    )
    # Rank r's first rows are the q heads of group r * groups / tp (blocks of (per_group + 2) * head_dim).
    group_rows = (per_group + 2) * head_dim
    for rank, shard in enumerate(shards):
        first_group = rank * groups // tp
        assert bitwise_equal(
            shard[:group_rows], full[first_group * group_rows : (first_group + 1) * group_rows]
        )


@pytest.mark.parametrize(
    ("groups", "tp", "fits"), [(2, 4, "1, 2"), (6, 4, "1, 2, 3, 6"), (1, 2, "1")]
)
def test_qkv_split_rejects_tp_not_dividing_query_groups(groups: int, tp: int, fits: str) -> None:
    full = torch.zeros(groups * 3 * 2, 4)
    with pytest.raises(ParallelLayoutError) as info:
        split_qkv(
            full,
            tp=tp,
            num_query_groups=groups,
            name="decoder.layers.0.self_attention.linear_qkv.weight",
        )
    message = str(info.value)
    assert (
        f"tp={tp}" in message
        and f"num_query_groups is {groups}" in message
        and f"({fits})" in message
    )
    assert "linear_qkv" in message


def test_qkv_rejects_rows_not_made_of_groups() -> None:
    with pytest.raises(ParallelLayoutError, match="not a multiple of num_query_groups=4"):
        split_qkv(torch.zeros(10, 2), tp=1, num_query_groups=4)


@st.composite
def gated_cases(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    tp = draw(TPS)
    half = tp * draw(st.integers(1, 3))
    shape = (2 * half,) if draw(st.booleans()) else (2 * half, draw(st.integers(1, 4)))
    return random_bits(shape, draw(dtypes()), draw(SEEDS)), tp


@FAST
@given(case=gated_cases())
def test_gated_pair_is_identity_and_rank_r_holds_gate_r_then_up_r(
    case: tuple[torch.Tensor, int],
) -> None:
    full, tp = case
    shards = split_gated(full, tp=tp)
    assert bitwise_equal(merge_gated(shards), full)
    assert _equal_lists(split_gated(merge_gated(shards), tp=tp), shards)
    gate, up = torch.chunk(full, 2)
    for rank, shard in enumerate(shards):
        assert bitwise_equal(
            shard, torch.cat([torch.chunk(gate, tp)[rank], torch.chunk(up, tp)[rank]])
        )


@pytest.mark.parametrize(
    ("split_fn", "shape", "tp", "pattern"),
    [
        (split_column, (6, 2), 4, r"dim 0 is 6.*\(1, 2, 3, 6\)"),
        (split_row, (2, 6), 4, r"dim 1 is 6"),
        (split_gated, (12, 2), 4, r"gate/up half of dim 0 is 6"),
        (split_gated, (5, 2), 1, r"even number"),
        (split_column, (), 1, r"at least 1 dimension"),
        (split_column, (4,), 0, r"tp must be a positive integer"),
    ],
)
def test_splits_reject_shapes_they_cannot_divide(split_fn, shape, tp, pattern) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParallelLayoutError, match=pattern):
        split_fn(torch.zeros(shape), tp=tp)


def test_merges_reject_unequal_shards_and_say_which() -> None:
    with pytest.raises(ParallelLayoutError, match=r"shard 0 is \(2, 3\).*shard 1 is \(3, 3\)"):
        merge_column([torch.zeros(2, 3), torch.zeros(3, 3)], name="w")
    with pytest.raises(ParallelLayoutError, match="no shards"):
        merge_row([], name="w")


def test_merging_a_single_shard_makes_no_copy() -> None:
    """TP = 1 exports merge one shard per parameter: no pass over its bytes (a 1.5B model is 3 GB)."""
    from bridge.parallel.vocab import merge_vocab

    w = torch.randn(24, 8)
    assert merge_column([w]).data_ptr() == w.data_ptr()
    assert merge_row([w]).data_ptr() == w.data_ptr()
    assert merge_qkv([w], num_query_groups=2).data_ptr() == w.data_ptr()
    assert merge_gated([w]).data_ptr() == w.data_ptr()
    merged = merge_vocab([w], vocab_size=20, divisible_by=8)  # padded to 24 rows: the padding is cut, as a view
    assert merged.data_ptr() == w.data_ptr() and merged.shape == (20, 8) and torch.equal(merged, w[:20])
    two = merge_column([w, w])  # more shards are still concatenated
    assert two.shape == (48, 8) and two.data_ptr() != w.data_ptr()


@FAST
@given(case=column_cases())
def test_column_merge_of_one_buffers_blocks_is_a_view_and_anything_else_a_copy(case) -> None:
    full, tp = case
    buffer = full.clone()
    merged = merge_column(list(buffer.chunk(tp)))  # gathered in place: already the concatenation
    assert bitwise_equal(merged, full) and merged.data_ptr() == buffer.data_ptr()
    shards = [s.clone() for s in buffer.chunk(tp)]  # separate tensors: concatenated by copying (TP > 1)
    copied = merge_column(shards)
    assert bitwise_equal(copied, full) and (tp == 1 or all(copied.data_ptr() != s.data_ptr() for s in shards))
    if tp > 1:  # blocks of one buffer out of order are not its concatenation
        rotated = list(buffer.chunk(tp))[1:] + list(buffer.chunk(tp))[:1]
        assert bitwise_equal(merge_column(rotated), torch.cat(rotated)) and merge_column(rotated).data_ptr() != buffer.data_ptr()
