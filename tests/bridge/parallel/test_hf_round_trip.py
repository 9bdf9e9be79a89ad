"""HF -> mappings -> Megatron state -> (TP, PP) shards -> merge -> mappings' inverse -> HF, composed.

Every piece the bridge converts with, chained without building MCore: random small checkpoints of
four families (Llama, Qwen2 with QKV bias, Qwen3-MoE, DeepSeek-V3 with MLA; names and shapes from
transformers itself, as ``save_pretrained`` writes them), the family's own mapping table read in
the HF -> Megatron direction (:meth:`~bridge.mappings.MegatronMappingRegistry.hf_to_megatron_lookup`),
the sharding metadata conversion uses (:func:`bridge.conversion.tp_meta`, vocabulary padding
included), and random TP x PP layouts from {1, 2, 4, 8} with MCore's first/last-stage overrides.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from bridge.parallel import padded_vocab_size
from bridge.parallel._common import as_bits, bitwise_equal
from bridge.parallel.layout_io import load_layout, save_layout
from bridge.parallel.reshard import reshard
from bridge.parallel.state import layout_for, merge_shards, split_full_state, split_state
from tests.helpers.megatron_states import family_tables, to_hf, to_megatron
from tests.strategies import HFArchitecture, Layout, dtypes, hf_architectures, hf_state, parallel_layouts

EMBEDDING, OUTPUT = "embedding.word_embeddings.weight", "output_layer.weight"


@st.composite
def hf_cases(draw: st.DrawFn, *, layouts: int = 1, max_layers: int = 8) -> tuple[Any, ...]:
    """``(arch, layout, ...)``: an HF architecture and ``layouts`` layouts that fit it."""
    arch = draw(hf_architectures(max_layers=max_layers))
    fitting = parallel_layouts(num_layers=arch.num_layers, tps=arch.valid_tps())
    return (arch, *(draw(fitting) for _ in range(layouts)))


def assert_same_state(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(found) == sorted(expected)
    different = [n for n in expected if not bitwise_equal(found[n], expected[n])]
    assert not different, different


def assert_vocab_padding(shards: dict, arch: HFArchitecture, layout: Layout) -> None:
    """Each TP rank holds ``padded / tp`` rows; the rows past the vocabulary are zeros."""
    padded = padded_vocab_size(
        arch.vocab_size, tp=layout.tp, divisible_by=arch.make_vocab_size_divisible_by
    )
    stage = {EMBEDDING: 0, OUTPUT: layout.pp - 1}
    for name, pp_rank in stage.items():
        if name == OUTPUT and arch.tied and layout.pp == 1:
            continue
        rows = torch.cat([shards[(r, pp_rank)][name] for r in range(layout.tp)])
        assert rows.shape[0] == padded
        assert not as_bits(rows[arch.vocab_size :]).any()


@settings(max_examples=60, deadline=None)
@given(case=hf_cases(), dtype=dtypes(), seed=st.integers(0, 2**10))
# the largest layout, tied (pp = 8 needs 8 layers, which random draws rarely reach)
@example(
    case=(HFArchitecture("llama", 8, 8, 8, 8, 2, 8, 300, 128, tied=True), Layout(8, 8)),
    dtype=torch.bfloat16,
    seed=0,
)
# MLA + MoE with a dense first layer, uneven stages (1, 1, 1, 2) and vocab padding at tp = 2
@example(
    case=(
        HFArchitecture(
            "deepseek_v3", 5, 8, 4, 4, 2, 8, 37, 8, tied=False, num_experts=2,
            moe_intermediate_size=4, dense_layers=(0,), q_lora_rank=4, kv_lora_rank=4,
            qk_rope_head_dim=4,
        ),
        Layout(2, 4, first_stage_layers=1, last_stage_layers=2),
    ),
    dtype=torch.float16,
    seed=1,
)  # fmt: skip
def test_hf_to_shards_to_hf_is_bit_exact(
    case: tuple[HFArchitecture, Layout], dtype: torch.dtype, seed: int
) -> None:
    arch, layout = case
    for what in (f"family={arch.family}", f"tp={layout.tp}", f"pp={layout.pp}", f"tied={arch.tied}"):
        event(what)
    hf = hf_state(arch, dtype=dtype, seed=seed)
    registry, ctx = family_tables(arch)
    full, kinds = to_megatron(hf, registry, ctx)
    assert (OUTPUT in full) is not arch.tied
    tied = {"share_embeddings_and_output_weights": arch.tied}
    shards = split_full_state(full, kinds, **tied, **layout.kwargs())
    assert_vocab_padding(shards, arch, layout)
    merged = merge_shards(shards, kinds, **tied, **layout.kwargs())
    assert_same_state(to_hf(merged, registry, ctx), hf)
    # merge, then split: the same shards again (split/merge are inverses both ways)
    again = split_state(merged, layout_for(merged, kinds, **tied, **layout.kwargs()))
    assert sorted(again) == sorted(shards)
    for rank, local in shards.items():
        assert_same_state(again[rank], local)


@settings(max_examples=30, deadline=None)
@given(case=hf_cases(layouts=2, max_layers=4), dtype=dtypes())
def test_reshard_equals_a_fresh_split_and_merges_back_to_the_same_hf(
    case: tuple[HFArchitecture, Layout, Layout], dtype: torch.dtype
) -> None:
    arch, src, dst = case
    hf = hf_state(arch, dtype=dtype)
    registry, ctx = family_tables(arch)
    full, kinds = to_megatron(hf, registry, ctx)
    tied = {"share_embeddings_and_output_weights": arch.tied}
    src_layout = layout_for(full, kinds, **tied, **src.kwargs())
    dst_layout = layout_for(full, kinds, **tied, **dst.kwargs())
    with tempfile.TemporaryDirectory() as tmp:
        save_layout(Path(tmp) / "a", split_state(full, src_layout), src_layout)
        assert reshard(Path(tmp) / "a", Path(tmp) / "b", **dst.kwargs()) == dst_layout
        layout, shards = load_layout(Path(tmp) / "b")
    assert layout == dst_layout
    fresh = split_state(full, dst_layout)
    assert sorted(shards) == sorted(fresh)
    for rank, local in fresh.items():
        assert_same_state(shards[rank], local)
    assert_same_state(to_hf(merge_shards(shards, kinds, **tied, **dst.kwargs()), registry, ctx), hf)
