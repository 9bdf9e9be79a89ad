"""Qwen2-MoE: softmax top-k routing, the shared expert with its sigmoid gate, QKV biases, dense layers and a
per-layer sliding window, against HF on CPU (fp32, eager), and over EP=2 (gloo, slow).

Measured with MCore 0.16.1 (max |logit diff|, budget 1e-5): ~3e-6 per variant. Attention matches HF
exactly; the MoE block differs by rounding (expert outputs summed in another order), as for Qwen3-MoE.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

from bridge.errors import ConfigError
from bridge.inference import forward_logits
from bridge.models.qwen2_moe.bridge import Qwen2MoEBridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)
from tests.bridge.test_distributed import _torchrun

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            shared_expert_intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            num_experts=4, num_experts_per_tok=2, max_position_embeddings=128, initializer_range=0.2)
VARIANTS = {
    # raw softmax top-k (the released Qwen1.5-MoE / Qwen2-57B-A14B setting), every layer MoE
    "softmax_topk": dict(norm_topk_prob=False),
    # renormalised top-k, a dense middle layer, tied embeddings, a 5-token window on HF's alternate layers
    "norm_topk_dense_tied_window": dict(norm_topk_prob=True, num_hidden_layers=3, mlp_only_layers=[1],
                                        tie_word_embeddings=True, use_sliding_window=True, sliding_window=5,
                                        max_window_layers=3),
}


def _checkpoint(name: str, root: Path) -> tuple[dict, Path]:
    cfg = {**TINY, **VARIANTS[name]}
    return cfg, make_checkpoint(root / "hf", Qwen2MoeConfig(**cfg), Qwen2MoeForCausalLM)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    return _checkpoint(request.param, tmp_path_factory.mktemp(f"qwen2_moe-{request.param}"))


def test_parity_and_bit_exact_round_trip(variant: tuple[dict, Path], tmp_path: Path, fresh_parallel_state) -> None:
    cfg, path = variant
    bridge, model = build(path)
    layers = model[0].decoder.layers
    dense = set(cfg.get("mlp_only_layers", []))
    assert [type(layer.mlp).__name__ for layer in layers] == [
        "MLP" if i in dense else "MoELayer" for i in range(cfg["num_hidden_layers"])]
    mcore = model[0].config
    assert (mcore.moe_shared_expert_gate, mcore.add_qkv_bias, mcore.moe_router_pre_softmax) == (
        True, True, not cfg["norm_topk_prob"])
    ids = token_ids(cfg["vocab_size"])
    assert max_abs_diff(model, path, ids, cfg["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)
    moe_layers = len(layers) - len(dense)
    assert sum(n.endswith("shared_expert_gate.weight") for n in exported) == moe_layers


def test_the_shared_expert_gate_is_loaded_and_matters(variant: tuple[dict, Path], fresh_parallel_state) -> None:
    cfg, path = variant
    _, model = build(path)
    hf = load_file(path / "model.safetensors")
    shared = model[0].decoder.layers[0].mlp.shared_experts
    assert torch.equal(shared.gate_weight, hf["model.layers.0.mlp.shared_expert_gate.weight"])
    assert torch.equal(shared.linear_fc1.weight, torch.cat([hf["model.layers.0.mlp.shared_expert.gate_proj.weight"],
                                                            hf["model.layers.0.mlp.shared_expert.up_proj.weight"]]))
    ids = token_ids(cfg["vocab_size"])
    before = forward_logits(model, ids, vocab_size=cfg["vocab_size"])
    with torch.no_grad():
        shared.gate_weight.zero_()  # sigmoid(0) = 0.5: half the shared expert instead of the gated amount
    assert not torch.allclose(before, forward_logits(model, ids, vocab_size=cfg["vocab_size"]), atol=1e-3)


def test_window_follows_hf_layer_types() -> None:
    """HF's Qwen2-MoE config windows layers i < max_window_layers with i + 1 odd (its ``layer_types``)."""
    provider = Qwen2MoEBridge().provider_bridge(Qwen2MoeConfig(**{**TINY, **VARIANTS["norm_topk_dense_tied_window"]}))
    assert provider.window_size == (4, 0)
    assert provider.config_overrides["window_attn_skip_freq"] == [1, 0, 1]
    assert provider.config_overrides["moe_layer_freq"] == [1, 0, 1]


@pytest.mark.parametrize("overrides, match", [
    (dict(num_experts_per_tok=1, norm_topk_prob=True), "no MCore counterpart"),
    (dict(shared_expert_intermediate_size=0), "shared_expert_intermediate_size > 0"),
    (dict(mlp_only_layers=[0, 1]), "at least one MoE layer"),
])
def test_unrepresentable_configs_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Qwen2MoEBridge().provider_bridge(Qwen2MoeConfig(**{**TINY, **overrides}))


def test_the_shared_expert_gate_needs_megatron_core_0_16() -> None:
    """``moe_shared_expert_gate`` first appears in 0.16.0: older releases get a release-aware refusal."""
    from bridge import compat

    assert compat.field_history()["fields"]["moe_shared_expert_gate"]["first"] == "0.16.0"
    assert "moe_shared_expert_gate" not in compat.fields_in_release("0.15.3")
    assert "moe_shared_expert_gate" in compat.fields_in_release("0.16.0")


@pytest.mark.slow
def test_expert_parallel_ep2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    _, path = _checkpoint("softmax_topk", tmp_path)
    rep = _torchrun(path, 1, 1, tmp_path / "out", ep=2)
    assert (rep["world_size"], rep["ep"]) == (2, 2)
    assert rep["max_abs_diff"] <= PARITY_ATOL, rep
    assert rep["export_bit_exact"], rep["export_mismatches"]
