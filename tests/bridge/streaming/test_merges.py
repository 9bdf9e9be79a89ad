"""hf_pieces cuts every HF tensor out of the TP shards exactly as megatron_to_hf(merge(shards)) builds it."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ParallelLayoutError
from bridge.mappings import AutoMapping
from bridge.parallel import kinds
from bridge.parallel._common import bitwise_equal, divisors
from bridge.parallel.spec import ParamSpec
from bridge.streaming.merges import hf_pieces, joins_without_merging
from bridge.streaming.shards import tp_meta
from tests.bridge.streaming.test_shards import ARCH, context, hf_tensors, mappings
from tests.strategies import architectures


def _shards_and_spec(mapping, ctx, tensors, tp):
    full = mapping.hf_to_megatron({n: tensors[n] for n in mapping.hf_names()}, ctx)
    spec = ParamSpec(mapping.sharding, tp_meta(mapping, ctx), full.dtype, tuple(full.shape))
    shards = kinds.split(mapping.sharding, full, tp=tp, name=mapping.megatron_param, **spec.meta)
    return full, shards, spec


@settings(max_examples=25, deadline=None)
@given(arch=architectures(max_layers=1), dtype=st.sampled_from((torch.float32, torch.bfloat16)),
       pick=st.integers(0, 3))
def test_blocks_concatenate_to_the_reference_export(arch, dtype, pick) -> None:
    tps = divisors(math.gcd(arch.num_query_groups, arch.ffn_hidden_size))
    tp = tps[pick % len(tps)]
    tensors = hf_tensors(arch, dtype=dtype)
    ctx = context(arch)
    for mapping in mappings():
        assert joins_without_merging(mapping, mapping.sharding), mapping
        full, shards, spec = _shards_and_spec(mapping, ctx, tensors, tp)
        got = hf_pieces(mapping, ctx, shards, spec, name=mapping.megatron_param)
        want = mapping.megatron_to_hf(full, ctx)
        assert list(got) == list(want), mapping
        for name, pieces in got.items():
            joined = pieces.tensor()
            assert joined.dtype == want[name].dtype and bitwise_equal(joined, want[name]), (mapping, tp, name)


def test_drifted_replicated_copies_and_foreign_shards_are_refused() -> None:
    tensors, ctx = hf_tensors(ARCH), context(ARCH)
    norm = next(m for m in mappings() if m.sharding == "replicated")
    _, shards, spec = _shards_and_spec(norm, ctx, tensors, 2)
    with pytest.raises(ParallelLayoutError, match="differs between TP rank 0 and TP rank 1"):
        hf_pieces(norm, ctx, [shards[0], shards[1] + 1], spec, name=norm.megatron_param)
    fc2 = next(m for m in mappings() if m.megatron_param.endswith("linear_fc2.weight"))
    _, shards, spec = _shards_and_spec(fc2, ctx, tensors, 2)
    with pytest.raises(ParallelLayoutError, match="do not belong to this layout"):
        hf_pieces(fc2, ctx, [shards[0], shards[1][:, :-1]], spec, name=fc2.megatron_param)


def test_a_mapping_with_its_own_inverse_takes_the_reference_path() -> None:
    class Negated(AutoMapping):
        def megatron_to_hf(self, tensor, ctx):
            return {self.hf_param: -tensor}

    mapping = Negated("decoder.layers.0.mlp.linear_fc2.weight", "m.down.weight")
    tensors, ctx = hf_tensors(ARCH), context(ARCH)
    full, shards, spec = _shards_and_spec(mapping, ctx, tensors, 2)
    assert not joins_without_merging(mapping, spec.kind)
    assert torch.equal(hf_pieces(mapping, ctx, shards, spec, name="x")["m.down.weight"].tensor(), -full)


def test_shards_given_as_file_spans_give_the_same_tensors(tmp_path) -> None:
    """Export reads shards as spans of the rank files: every kind but row-parallel (read into memory, then
    written row by row) and replicated (checked in memory) stays spans."""
    from safetensors.torch import save_file

    from bridge.streaming.files import SpanFiles
    from bridge.streaming.pieces import ColumnJoin, FileSpan

    tensors, ctx = hf_tensors(ARCH), context(ARCH)
    for mapping in mappings():
        full, shards, spec = _shards_and_spec(mapping, ctx, tensors, 2)
        for rank, shard in enumerate(shards):
            save_file({"t": shard.contiguous()}, str(tmp_path / f"r{rank}.safetensors"))
        files = SpanFiles(lambda r: tmp_path / f"r{r}.safetensors")
        got = hf_pieces(mapping, ctx, [files.whole(r, "t") for r in range(2)], spec, name=mapping.megatron_param)
        for name, want in mapping.megatron_to_hf(full, ctx).items():
            assert bitwise_equal(got[name].tensor(), want), (mapping, name)
        parts = [p for pieces in got.values() for p in pieces.parts]
        if mapping.sharding == "row" and mapping.megatron_param.endswith("weight"):
            assert [type(p) for p in parts] == [ColumnJoin], mapping
        elif mapping.sharding not in ("row", "replicated"):
            assert all(isinstance(p, FileSpan) for p in parts), mapping
