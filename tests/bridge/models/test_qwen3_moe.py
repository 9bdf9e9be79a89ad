"""Qwen3-MoE: routing, per-expert weights, dense/MoE layer mixes and the sliding window against HF on CPU;
expert placement per EP.

Measured on CPU fp32 (HF eager): max |logit diff| about 2e-6 (budget 1e-5). Attention layers
match HF exactly; the MoE block differs by rounding only (~2e-6 on outputs of magnitude ~10):
MCore takes the softmax over the top-k logits where HF renormalises top-k probabilities, and it
sums the weighted expert outputs in another order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

from bridge.errors import ConfigError
from bridge.mappings import MappingContext
from bridge.models._moe import moe_mappings
from bridge.models.qwen3_moe.bridge import Qwen3MoEBridge
from bridge.parallel import expert as ep_ops
from bridge.parallel import kinds
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2,
            max_position_embeddings=128, initializer_range=0.2)
VARIANTS = {
    # renormalised top-k (the released Qwen3-MoE checkpoints), every layer MoE
    "norm_topk": dict(norm_topk_prob=True),
    # raw softmax top-k, a dense layer in the middle (mlp_only_layers), tied embeddings, a 5-token window
    "softmax_topk_dense_tied_window": dict(norm_topk_prob=False, num_hidden_layers=3, mlp_only_layers=[1],
                                           tie_word_embeddings=True, use_sliding_window=True, sliding_window=5),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    cfg = {**TINY, **VARIANTS[request.param]}
    path = make_checkpoint(tmp_path_factory.mktemp(f"qwen3_moe-{request.param}") / "hf",
                           Qwen3MoeConfig(**cfg), Qwen3MoeForCausalLM)
    return cfg, path


def test_parity_and_bit_exact_round_trip(variant: tuple[dict, Path], tmp_path: Path, fresh_parallel_state) -> None:
    cfg, path = variant
    bridge, model = build(path)
    layers = model[0].decoder.layers
    dense = set(cfg.get("mlp_only_layers", []))
    assert [type(layer.mlp).__name__ for layer in layers] == [
        "MLP" if i in dense else "MoELayer" for i in range(cfg["num_hidden_layers"])
    ]
    mcore = model[0].config
    assert mcore.moe_router_pre_softmax is (not cfg["norm_topk_prob"])
    assert (mcore.moe_expert_capacity_factor, mcore.moe_aux_loss_coeff) == (None, 0.0)
    assert mcore.window_size == ((cfg["sliding_window"] - 1, 0) if cfg.get("use_sliding_window") else None)
    ids = token_ids(cfg["vocab_size"])
    assert max_abs_diff(model, path, ids, cfg["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)
    assert sum(".mlp.experts." in n for n in exported) == 3 * cfg["num_experts"] * (len(layers) - len(dense))


def test_experts_keep_their_index_and_gate_up_order(variant: tuple[dict, Path], fresh_parallel_state) -> None:
    """The second wildcard is the expert: MCore expert e holds HF expert e, fc1 = [gate_e; up_e]."""
    cfg, path = variant
    _, model = build(path)
    hf = load_file(path / "model.safetensors")
    last = cfg["num_hidden_layers"] - 1
    moe = model[0].decoder.layers[last].mlp
    assert torch.equal(moe.router.weight, hf[f"model.layers.{last}.mlp.gate.weight"])
    for e in range(cfg["num_experts"]):
        fc1 = moe.experts.local_experts[e].linear_fc1.weight
        hf_e = f"model.layers.{last}.mlp.experts.{e}"
        assert torch.equal(fc1, torch.cat([hf[f"{hf_e}.gate_proj.weight"], hf[f"{hf_e}.up_proj.weight"]]))
        assert torch.equal(moe.experts.local_experts[e].linear_fc2.weight, hf[f"{hf_e}.down_proj.weight"])


@pytest.mark.parametrize("overrides, match", [
    (dict(num_experts_per_tok=1, norm_topk_prob=True), "no MCore counterpart"),
    (dict(mlp_only_layers=[0, 1]), "at least one MoE layer"),
    (dict(num_experts_per_tok=8), "must not exceed"),
])
def test_unrepresentable_configs_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Qwen3MoEBridge().provider_bridge(Qwen3MoeConfig(**{**TINY, **overrides}))


def test_decoder_sparse_step_becomes_a_layer_list() -> None:
    """HF: layer i is MoE iff (i + 1) % step == 0; MCore's integer moe_layer_freq counts from 0, so a list."""
    provider = Qwen3MoEBridge().provider_bridge(Qwen3MoeConfig(**{**TINY, "num_hidden_layers": 4},
                                                               decoder_sparse_step=2))
    assert provider.config_overrides["moe_layer_freq"] == [0, 1, 0, 1]
    assert "moe_layer_freq" not in Qwen3MoEBridge().provider_bridge(Qwen3MoeConfig(**TINY)).config_overrides


# -- expert parallelism: pure functions over the family's expert tensors ------------------------------------

@st.composite
def expert_layouts(draw: st.DrawFn, *, max_experts: int = 8, max_tp: int = 2) -> tuple[int, int, int]:
    """``(num_experts, ep, tp)`` with ``ep`` dividing ``num_experts``."""
    experts = draw(st.sampled_from([n for n in (1, 2, 4, 6, 8) if n <= max_experts]))
    ep = draw(st.sampled_from([d for d in range(1, experts + 1) if experts % d == 0]))
    tp = draw(st.sampled_from([t for t in (1, 2) if t <= max_tp]))
    return experts, ep, tp


def _hf_expert_tensors(experts: int, *, hidden: int = 8, ffn: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for e in range(experts):
        for name, shape in (("gate_proj", (ffn, hidden)), ("up_proj", (ffn, hidden)), ("down_proj", (hidden, ffn))):
            out[f"model.layers.0.mlp.experts.{e}.{name}.weight"] = torch.randn(shape, generator=gen)
    return out


@settings(max_examples=30, deadline=None)
@given(layout=expert_layouts())
def test_expert_weights_split_and_merge_per_ep(layout: tuple[int, int, int]) -> None:
    """HF experts -> full MCore tensors (the table) -> EP x TP shards -> merged back: bit-exact, and
    EP rank r holds the contiguous block of experts MCore places there under its local numbers."""
    experts, ep, tp = layout
    hf = _hf_expert_tensors(experts)
    registry = Qwen3MoEBridge().mapping_registry(Qwen3MoEBridge().provider_bridge(Qwen3MoeConfig(**TINY)))
    ctx = MappingContext()
    per_rank = experts // ep
    for fc in ("linear_fc1", "linear_fc2"):
        names = [f"decoder.layers.0.mlp.experts.local_experts.{e}.{fc}.weight" for e in range(experts)]
        mappings = [registry.megatron_to_hf_lookup(n) for n in names]
        inner = {m.sharding for m in mappings}
        assert inner == {"gated" if fc == "linear_fc1" else "row"}
        stack = torch.stack([m.hf_to_megatron({k: hf[k] for k in m.hf_names()}, ctx) for m in mappings])
        shards = kinds.split("expert", stack, tp=tp, ep=ep, inner=inner.pop())
        assert len(shards) == ep * tp
        assert torch.equal(kinds.merge("expert", shards, ep=ep, inner=mappings[0].sharding), stack)
        for e, name in enumerate(names):
            rank, local = ep_ops.expert_name_to_local(name, num_experts=experts, ep=ep)
            assert rank == e // per_rank
            assert local == name.replace(f"local_experts.{e}.", f"local_experts.{e % per_rank}.")
            assert ep_ops.expert_name_to_global(local, rank, num_experts=experts, ep=ep) == name
            # TP rank 0 of that EP rank holds this expert's first TP shard
            own = kinds.split(mappings[e].sharding, stack[e], tp=tp)[0]
            assert torch.equal(shards[rank * tp][e % per_rank], own)
        # the exported HF tensors are the originals, expert by expert
        for m, full in zip(mappings, stack):
            for hf_name, tensor in m.megatron_to_hf(full, ctx).items():
                assert torch.equal(tensor, hf[hf_name])


def test_moe_table_has_one_row_per_expert_tensor_kind() -> None:
    rows = {m.megatron_param: m.hf_names() for m in moe_mappings(shared_experts=True, expert_bias=True)}
    assert rows["decoder.layers.*.mlp.experts.local_experts.*.linear_fc1.weight"] == [
        "model.layers.*.mlp.experts.*.gate_proj.weight", "model.layers.*.mlp.experts.*.up_proj.weight"]
    assert rows["decoder.layers.*.mlp.router.expert_bias"] == ["model.layers.*.mlp.gate.e_score_correction_bias"]
    assert "decoder.layers.*.mlp.shared_experts.linear_fc1.weight" in rows


def test_releases_sizing_local_experts_with_ffn_hidden_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """megatron-core 0.10/0.11 build SequentialMLP experts from ffn_hidden_size (the 0.11.0 probe failed
    with MCore's "Please use GroupedMLP" assertion); simulated through the compat feature that detects it."""
    from bridge import compat
    from bridge.errors import UnsupportedFeatureError

    assert compat.has_feature("local_experts_own_size")  # the installed release sizes experts by themselves
    config = Qwen3MoEBridge().provider_bridge(Qwen3MoeConfig(**TINY)).transformer_config()
    assert (config.ffn_hidden_size, config.moe_ffn_hidden_size) == (128, 32)
    monkeypatch.setitem(compat.FEATURES, "local_experts_own_size", lambda: False)
    all_moe = Qwen3MoEBridge().provider_bridge(Qwen3MoeConfig(**TINY)).finalize()
    assert all_moe.transformer_config().ffn_hidden_size == 32  # no dense layer reads ffn_hidden_size
    mixed = Qwen3MoEBridge().provider_bridge(Qwen3MoeConfig(**{**TINY, "num_hidden_layers": 3}, mlp_only_layers=[1]))
    with pytest.raises(UnsupportedFeatureError, match="dense layers of size 128 next to experts of size 32"):
        mixed.finalize()


def test_a_virtual_pipeline_with_dense_and_moe_blocks_is_refused_on_gpt_model() -> None:
    """GPTModel's block spec for dense + MoE blocks would be needed per virtual stage (MCore asserts a vp_stage);
    the bridge refuses before building and names HybridModel, which the layout grid runs at PP=2 x VPP=2."""
    from bridge.errors import UnsupportedFeatureError

    def provider(mlp_only_layers: list[int]):
        p = Qwen3MoEBridge().provider_bridge(Qwen3MoeConfig(**{**TINY, "num_hidden_layers": 4},
                                                            mlp_only_layers=mlp_only_layers))
        p.pipeline_model_parallel_size = 2
        p.virtual_pipeline_model_parallel_size = 2
        return p

    with pytest.raises(UnsupportedFeatureError, match="use model_class='hybrid'"):
        provider([1]).finalize()
    assert provider([]).finalize().finalized  # every block MoE: one layer spec, no per-stage block spec
