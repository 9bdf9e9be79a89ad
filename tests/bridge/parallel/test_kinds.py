"""The kinds registry and the split/merge dispatch: every registered kind round-trips through it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ParallelLayoutError
from bridge.parallel._common import bitwise_equal
from bridge.parallel.kinds import KINDS, merge, shard_count, shard_shape, split
from tests.strategies import dtypes, random_bits

# One valid (full shape, split meta, merge meta) per kind for tp in {1, 2, 4}; a new kind must be
# added here, which test_every_registered_kind_has_a_case enforces.
CASES: dict[str, tuple[tuple[int, ...], dict[str, Any], dict[str, Any]]] = {
    "column": ((8, 3), {}, {}),
    "row": ((3, 8), {}, {}),
    "replicated": ((5,), {}, {}),
    "qkv": ((4 * 3 * 2, 3), {"num_query_groups": 4}, {"num_query_groups": 4}),
    "gated": ((16, 2), {}, {}),
    "vocab": ((13, 2), {"divisible_by": 8}, {"divisible_by": 8, "vocab_size": 13}),
    "expert": ((4, 8, 4), {"ep": 2, "inner": "gated"}, {"ep": 2, "inner": "gated"}),
}


def test_every_registered_kind_has_a_case() -> None:
    assert set(CASES) == set(KINDS)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(sorted(CASES)),
    tp=st.sampled_from((1, 2, 4)),
    dtype=dtypes(),
    seed=st.integers(0, 2**16),
)
def test_dispatch_round_trips_every_kind_and_rank_selects_one_shard(
    kind: str, tp: int, dtype: torch.dtype, seed: int
) -> None:
    shape, split_meta, merge_meta = CASES[kind]
    full = random_bits(shape, dtype, seed)
    shards = split(kind, full, tp=tp, **split_meta)
    assert isinstance(shards, list) and len(shards) == shard_count(kind, tp=tp, **split_meta)
    assert bitwise_equal(merge(kind, shards, **merge_meta), full)
    last = split(kind, full, tp=tp, rank=len(shards) - 1, **split_meta)
    assert isinstance(last, torch.Tensor) and bitwise_equal(last, shards[-1])


def test_dispatch_rejects_unknown_kinds_and_metadata_with_the_allowed_values() -> None:
    with pytest.raises(
        ParallelLayoutError, match=r"Unknown sharding kind 'colum' for 'w'.*'column'"
    ):
        split("colum", torch.zeros(2), tp=1, name="w")
    with pytest.raises(
        ParallelLayoutError, match=r"unknown metadata \['num_query_groups'\]; it accepts: none"
    ):
        split("column", torch.zeros(2), tp=1, num_query_groups=2)
    with pytest.raises(ParallelLayoutError, match=r"needs metadata \['vocab_size'\] to merge"):
        merge("vocab", [torch.zeros(8, 2)])
    with pytest.raises(
        ParallelLayoutError, match=r"needs metadata \['num_query_groups'\] to split"
    ):
        split("qkv", torch.zeros(6, 2), tp=1)
    with pytest.raises(ParallelLayoutError, match=r"rank must be in 0..1"):
        split("column", torch.zeros(4), tp=2, rank=2)


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(sorted(CASES)),
    tp=st.sampled_from((1, 2, 3, 4, 8)),
    rows=st.integers(1, 17),
    extra=st.lists(st.integers(1, 3), max_size=2),
)
def test_shard_shape_predicts_split_shapes_and_raises_exactly_when_split_does(
    kind: str, tp: int, rows: int, extra: list[int]
) -> None:
    base, split_meta, _ = CASES[kind]
    shape = (rows, *base[1:], *extra) if kind != "expert" else (base[0], rows, *base[2:])
    full = torch.zeros(shape)
    try:
        predicted: tuple[int, ...] | str = shard_shape(kind, shape, tp=tp, name="p", **split_meta)
    except ParallelLayoutError as exc:
        predicted = str(exc)
    try:
        shards = split(kind, full, tp=tp, name="p", **split_meta)
        assert isinstance(shards, list)
        assert all(tuple(s.shape) == predicted for s in shards)
    except ParallelLayoutError as exc:
        assert predicted == str(exc)
