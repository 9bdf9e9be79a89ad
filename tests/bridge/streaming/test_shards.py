"""read_shard returns exactly the reference split (full HF tensors -> full Megatron tensor -> one piece)
while reading only the rank's rows or columns; the reads are counted, so "only" is checked, not assumed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from bridge.errors import ParallelLayoutError
from bridge.mappings import (
    AutoMapping,
    ConcatenatedQKVMapping,
    GatedMLPMapping,
    MappingContext,
    QKVMapping,
    RowParallelMapping,
)
from bridge.parallel import kinds
from bridge.parallel._common import bitwise_equal, divisors
from bridge.streaming.files import SliceReader
from bridge.streaming.pieces import FileSpan
from bridge.streaming.shards import all_shard_pieces, read_shard, reads_slices, shard_pieces, tp_meta
from tests.strategies import Architecture, architectures, random_bits

L = "decoder.layers.0"


def hf_tensors(arch: Architecture, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random-bit HF tensors of one layer of ``arch`` in every layout the mappings below read."""
    h, hd, nh, ng, f = arch.hidden_size, arch.head_dim, arch.num_attention_heads, arch.num_query_groups, \
        arch.ffn_hidden_size
    shapes = {
        "q.weight": (nh * hd, h), "k.weight": (ng * hd, h), "v.weight": (ng * hd, h),
        "q.bias": (nh * hd,), "k.bias": (ng * hd,), "v.bias": (ng * hd,),
        "qkv.weight": ((nh + 2 * ng) * hd, h), "o.weight": (h, nh * hd), "o.bias": (h,),
        "gate.weight": (f, h), "up.weight": (f, h), "w12.weight": (2 * f, h), "fc1.weight": (f, h),
        "fc1.bias": (f,), "down.weight": (h, f), "ln.weight": (h,), "embed.weight": (arch.vocab_size, h),
    }
    return {f"m.{n}": random_bits(s, dtype, seed + i) for i, (n, s) in enumerate(sorted(shapes.items()))}


def mappings() -> list:
    """One mapping of every (mapping class, sharding kind) pair read_shard handles."""
    return [
        QKVMapping(f"{L}.self_attention.linear_qkv.weight", q="m.q.weight", k="m.k.weight", v="m.v.weight"),
        QKVMapping(f"{L}.self_attention.linear_qkv.bias", q="m.q.bias", k="m.k.bias", v="m.v.bias"),
        ConcatenatedQKVMapping("decoder.layers.1.self_attention.linear_qkv.weight", "m.qkv.weight"),
        AutoMapping(f"{L}.self_attention.linear_proj.weight", "m.o.weight"),  # row, 2-D
        RowParallelMapping(f"{L}.self_attention.linear_proj.bias", "m.o.bias"),  # row, 1-D: replicated
        GatedMLPMapping(f"{L}.mlp.linear_fc1.weight", gate="m.gate.weight", up="m.up.weight"),
        AutoMapping("decoder.layers.1.mlp.linear_fc1.weight", "m.w12.weight", sharding="gated"),  # fused on disk
        AutoMapping("decoder.layers.2.mlp.linear_fc1.weight", "m.fc1.weight"),  # column
        AutoMapping("decoder.layers.2.mlp.linear_fc1.bias", "m.fc1.bias"),  # column, 1-D
        AutoMapping(f"{L}.mlp.linear_fc2.weight", "m.down.weight"),  # row
        AutoMapping(f"{L}.input_layernorm.weight", "m.ln.weight"),  # replicated
        AutoMapping("embedding.word_embeddings.weight", "m.embed.weight"),  # vocab (padded)
    ]


def context(arch: Architecture) -> MappingContext:
    return MappingContext(num_attention_heads=arch.num_attention_heads, num_query_groups=arch.num_query_groups,
                          head_dim=arch.head_dim, vocab_size=arch.vocab_size,
                          make_vocab_size_divisible_by=arch.make_vocab_size_divisible_by)


def reference(mapping, ctx: MappingContext, tensors: dict[str, torch.Tensor], *, tp: int, rank: int) -> torch.Tensor:
    full = mapping.hf_to_megatron({n: tensors[n] for n in mapping.hf_names()}, ctx)
    return kinds.split(mapping.sharding, full, tp=tp, rank=rank, name=mapping.megatron_param, **tp_meta(mapping, ctx))


def source(directory: Path, tensors: dict[str, torch.Tensor]) -> SliceReader:
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return SliceReader(directory)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arch=architectures(max_layers=1), dtype=st.sampled_from((torch.float32, torch.bfloat16)),
       pick=st.integers(0, 3))
def test_every_rank_equals_the_reference_split_bit_for_bit(arch, dtype, pick, tmp_path_factory) -> None:
    tps = [d for d in divisors(math.gcd(arch.num_query_groups, arch.ffn_hidden_size))]
    tp = tps[pick % len(tps)]
    tensors = hf_tensors(arch, dtype=dtype)
    ctx = context(arch)
    src = source(tmp_path_factory.mktemp("ckpt"), tensors)
    for mapping in mappings():
        assert reads_slices(mapping), mapping
        together = all_shard_pieces(mapping, ctx, src, tp=tp)
        for rank in range(tp):
            got = read_shard(mapping, ctx, src, tp=tp, rank=rank)
            want = reference(mapping, ctx, tensors, tp=tp, rank=rank)
            assert got.dtype == want.dtype and got.shape == want.shape, (mapping, tp, rank)
            assert bitwise_equal(got, want), (mapping, tp, rank)
            assert bitwise_equal(together[rank].tensor(), want), (mapping, tp, rank)


ARCH = Architecture(num_layers=1, hidden_size=16, num_attention_heads=8, num_query_groups=4, head_dim=4,
                    ffn_hidden_size=24, vocab_size=100, make_vocab_size_divisible_by=8, tied=False, gated=True,
                    bias=True)


@pytest.fixture
def arch_source(tmp_path: Path):
    tensors = hf_tensors(ARCH)
    return tensors, source(tmp_path / "ckpt", tensors)


def _by_target(name: str):
    return next(m for m in mappings() if m.megatron_param == name)


@pytest.mark.parametrize("tp", [2, 4])
def test_fused_and_split_kinds_read_only_their_share(arch_source, tp: int) -> None:
    """At TP=tp every rank reads 1/tp of q, k, v, gate, up, o and down, and no tensor whole."""
    tensors, src = arch_source
    ctx = context(ARCH)
    for target, names in [
        (f"{L}.self_attention.linear_qkv.weight", ["m.q.weight", "m.k.weight", "m.v.weight"]),
        (f"{L}.mlp.linear_fc1.weight", ["m.gate.weight", "m.up.weight"]),
        (f"{L}.self_attention.linear_proj.weight", ["m.o.weight"]),
        (f"{L}.mlp.linear_fc2.weight", ["m.down.weight"]),
        ("decoder.layers.1.self_attention.linear_qkv.weight", ["m.qkv.weight"]),
    ]:
        for rank in range(tp):
            before = src.stats
            read_shard(_by_target(target), ctx, src, tp=tp, rank=rank)
            after = src.stats
            assert after.full_reads == before.full_reads, target
            assert after.bytes_read - before.bytes_read == sum(tensors[n].nbytes for n in names) // tp, target


def test_vocab_padding_rows_are_zeros_and_never_read(arch_source) -> None:
    """vocab 100, divisible by 8, TP=4: 128 rows, 32 per rank; the last rank reads 4 rows, pads 28 zeros."""
    tensors, src = arch_source
    embed = _by_target("embedding.word_embeddings.weight")
    before = src.stats
    last = read_shard(embed, context(ARCH), src, tp=4, rank=3)
    assert last.shape == (32, 16)
    assert torch.equal(last[:4], tensors["m.embed.weight"][96:]) and not last[4:].any()
    assert src.stats.bytes_read - before.bytes_read == 4 * 16 * 4


def test_a_mapping_with_its_own_transform_falls_back_to_whole_reads(arch_source) -> None:
    tensors, src = arch_source

    class Negated(AutoMapping):
        def hf_to_megatron(self, hf, ctx):
            return -hf[self.hf_param]

    mapping = Negated(f"{L}.mlp.linear_fc2.weight", "m.down.weight")
    assert not reads_slices(mapping)
    before = src.stats
    got = read_shard(mapping, context(ARCH), src, tp=2, rank=1)
    assert torch.equal(got, -tensors["m.down.weight"][:, 12:])
    assert src.stats.full_reads == before.full_reads + 1


def test_tp_that_does_not_divide_the_groups_fails_before_reading(arch_source) -> None:
    _, src = arch_source
    qkv = _by_target(f"{L}.self_attention.linear_qkv.weight")
    with pytest.raises(ParallelLayoutError, match="num_query_groups"):
        read_shard(qkv, context(ARCH), src, tp=3, rank=0)
    assert src.stats.bytes_read == 0


def test_row_parallel_shards_are_one_span_per_row_and_all_ranks_read_the_tensor_once(arch_source) -> None:
    tensors, src = arch_source
    fc2 = _by_target(f"{L}.mlp.linear_fc2.weight")
    pieces = shard_pieces(fc2, context(ARCH), src, tp=2, rank=1)
    assert len(pieces.parts) == ARCH.hidden_size and all(isinstance(p, FileSpan) for p in pieces.parts)
    assert torch.equal(pieces.tensor(), tensors["m.down.weight"][:, 12:])
    before = src.stats
    both = all_shard_pieces(fc2, context(ARCH), src, tp=2)
    assert src.stats.full_reads == before.full_reads + 1 and src.stats.slice_reads == before.slice_reads
    assert [torch.equal(p.tensor(), t) for p, t in zip(both, tensors["m.down.weight"].chunk(2, dim=1))] == [True] * 2
