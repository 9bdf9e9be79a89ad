"""Whole-model split/merge over random small GPTs and random TP x PP layouts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ParallelLayoutError
from bridge.parallel._common import bitwise_equal
from bridge.parallel.state import layout_for, merge_shards, split_full_state
from tests.strategies import (
    PARALLEL_SIZES,
    Architecture,
    Layout,
    architectures,
    architectures_and_layouts,
    dtypes,
    megatron_state,
    valid_tps,
)

FAST = settings(max_examples=40, deadline=None)


def _states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(bitwise_equal(a[k], b[k]) for k in a)


@FAST
@given(case=architectures_and_layouts(), dtype=dtypes(), seed=st.integers(0, 2**10))
def test_full_to_shards_to_full_is_bit_exact(
    case: tuple[Architecture, Layout], dtype: torch.dtype, seed: int
) -> None:
    arch, layout = case
    full, kinds = megatron_state(arch, dtype=dtype, seed=seed)
    tied = arch.tied
    shards = split_full_state(
        full, kinds, share_embeddings_and_output_weights=tied, **layout.kwargs()
    )
    assert sorted(shards) == sorted((r, s) for r in range(layout.tp) for s in range(layout.pp))
    pipeline = layout.pipeline(arch.num_layers)
    for (_tp_rank, stage), local_state in shards.items():
        # each rank holds only its stage's layers, numbered from 0
        layers = {int(n.split(".")[2]) for n in local_state if n.startswith("decoder.layers.")}
        assert layers == set(range(pipeline.sizes[stage]))
        assert ("embedding.word_embeddings.weight" in local_state) == (stage == 0)
        has_output = "output_layer.weight" in local_state
        assert has_output == (stage == layout.pp - 1 and (not tied or layout.pp > 1))
    if tied and layout.pp > 1:
        for r in range(layout.tp):
            assert bitwise_equal(
                shards[(r, layout.pp - 1)]["output_layer.weight"],
                shards[(r, 0)]["embedding.word_embeddings.weight"],
            )
    kinds_with_vocab = layout_for(
        full, kinds, tp=layout.tp, share_embeddings_and_output_weights=tied
    ).params
    merged = merge_shards(
        shards, kinds_with_vocab, share_embeddings_and_output_weights=tied, **layout.kwargs()
    )
    assert _states_equal(merged, full)


@FAST
@given(
    arch=architectures(max_layers=4),
    tp=st.sampled_from(PARALLEL_SIZES),
    pp=st.sampled_from((1, 2, 3, 4)),
)
def test_layouts_that_do_not_fit_raise_a_readable_error(
    arch: Architecture, tp: int, pp: int
) -> None:
    full, kinds = megatron_state(arch)
    fits = tp in valid_tps(arch) and arch.num_layers % pp == 0
    if fits:
        ranks = split_full_state(full, kinds, tp=tp, pp=pp, share_embeddings_and_output_weights=arch.tied)
        assert len(ranks) == tp * pp  # one state per rank
        return
    with pytest.raises(ParallelLayoutError) as info:
        split_full_state(full, kinds, tp=tp, pp=pp, share_embeddings_and_output_weights=arch.tied)
    message = str(info.value)
    if arch.num_layers % pp:
        assert f"num_layers={arch.num_layers} cannot be split evenly over pp={pp}" in message
    else:
        assert f"for tp={tp}" in message and "Use a tp that divides" in message


def test_a_drifted_tied_copy_is_reported_on_merge() -> None:
    arch = Architecture(2, 4, 2, 1, 2, 8, 10, 8, tied=True, gated=True, bias=False)
    full, kinds = megatron_state(arch)
    shards = split_full_state(full, kinds, tp=1, pp=2, share_embeddings_and_output_weights=True)
    specs = layout_for(full, kinds, tp=1, share_embeddings_and_output_weights=True).params
    shards[(0, 1)]["output_layer.weight"] = shards[(0, 1)]["output_layer.weight"] + 1
    with pytest.raises(
        ParallelLayoutError,
        match=r"'output_layer.weight' should be a copy of 'embedding.word_embeddings.weight'",
    ):
        merge_shards(shards, specs, tp=1, pp=2, share_embeddings_and_output_weights=True)


def test_merge_reports_missing_ranks_and_misplaced_parameters() -> None:
    arch = Architecture(2, 4, 2, 2, 2, 8, 10, 8, tied=False, gated=False, bias=False)
    full, kinds = megatron_state(arch)
    specs = layout_for(full, kinds, tp=2).params
    shards = split_full_state(full, kinds, tp=2, pp=2)
    with pytest.raises(ParallelLayoutError, match=r"missing \[\(1, 1\)\]"):
        merge_shards({k: v for k, v in shards.items() if k != (1, 1)}, specs, tp=2, pp=2)
    shards[(0, 0)]["output_layer.weight"] = shards[(0, 1)].pop("output_layer.weight")
    with pytest.raises(ParallelLayoutError, match="belongs to pipeline stage 1, not stage 0"):
        merge_shards(shards, specs, tp=2, pp=2)


def test_split_rejects_missing_kinds_and_an_untied_output_in_a_tied_model() -> None:
    arch = Architecture(1, 4, 1, 1, 2, 4, 10, 1, tied=False, gated=False, bias=False)
    full, kinds = megatron_state(arch)
    with pytest.raises(ParallelLayoutError, match="No sharding kind for 1 parameter"):
        split_full_state(full, {k: v for k, v in kinds.items() if k != "output_layer.weight"}, tp=1)
    with pytest.raises(ParallelLayoutError, match="a tied model keeps only the word embedding"):
        split_full_state(full, kinds, tp=1, share_embeddings_and_output_weights=True)
