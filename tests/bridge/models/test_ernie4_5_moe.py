"""Ernie-4.5-MoE: softmax routing with an expert bias for the choice only (the bridge's own router in the layer
spec), shared experts, a leading dense layer and interleaved RoPE, against HF on CPU (fp32, eager); EP=2 (slow).

Measured with MCore 0.16.1 (max |logit diff|, 2 x 17 tokens): shared_tied 1.9e-6, untied_top3 1.4e-6 (budget 1e-5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file
from transformers import Ernie4_5_MoeConfig, Ernie4_5_MoeForCausalLM

from bridge import compat
from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.models.ernie4_5_moe.bridge import Ernie45MoEBridge, as_row, from_row
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)
from tests.bridge.test_distributed import _torchrun

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, moe_num_experts=4, moe_k=2, moe_layer_start_index=1,
            max_position_embeddings=128, initializer_range=0.2)
VARIANTS = {
    "shared_tied": dict(moe_num_shared_experts=1, tie_word_embeddings=True),  # Ernie-4.5's defaults
    "untied_top3": dict(moe_num_shared_experts=0, tie_word_embeddings=False, moe_k=3),
}


def _with_expert_bias(cfg: Any) -> torch.nn.Module:
    """HF's model with a routing-changing ``e_score_correction_bias`` (zeros after HF's initialisation)."""
    model = Ernie4_5_MoeForCausalLM(cfg)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("e_score_correction_bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def _checkpoint(name: str, root: Path) -> tuple[Any, Path]:
    cfg = Ernie4_5_MoeConfig(**{**TINY, **VARIANTS[name]})
    return cfg, make_checkpoint(root / "hf", cfg, _with_expert_bias)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    return _checkpoint(request.param, tmp_path_factory.mktemp(f"ernie-{request.param}"))


def test_parity_and_bit_exact_round_trip(variant: tuple[Any, Path], tmp_path: Path, fresh_parallel_state) -> None:
    cfg, path = variant
    bridge, model = build(path)
    layers = model[0].decoder.layers
    assert [type(layer.mlp).__name__ for layer in layers] == ["MLP", "MoELayer", "MoELayer"]
    assert type(layers[1].mlp.router).__name__ == "BiasedSoftmaxRouter"
    assert model[0].config.rotary_interleaved
    ids = token_ids(cfg.vocab_size)
    assert max_abs_diff(model, path, ids, cfg.vocab_size) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)
    assert ("lm_head.weight" in exported) is not cfg.tie_word_embeddings


def test_the_expert_bias_changes_the_choice_not_the_weights(variant: tuple[Any, Path], fresh_parallel_state) -> None:
    """The router's bias is HF's, and on equal inputs MCore's router picks HF's experts with HF's weights."""
    from transformers import AutoModelForCausalLM

    cfg, path = variant
    _, model = build(path)
    hf_tensors = load_file(path / "model.safetensors")
    router = model[0].decoder.layers[2].mlp.router
    assert torch.equal(router.expert_bias, hf_tensors["model.layers.2.mlp.moe_statics.e_score_correction_bias"][0])
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    x = torch.randn(40, cfg.hidden_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, weights, chosen = hf.model.layers[2].mlp.gate(x)
        probs, routing_map = router(x[:, None, :])
        unbiased = torch.topk(torch.softmax(x @ router.weight.T, -1), cfg.moe_k, dim=-1).indices
    assert torch.equal(routing_map, torch.zeros_like(routing_map).scatter(1, chosen, True))
    assert torch.allclose(probs.gather(1, chosen), weights, atol=1e-7)
    assert not torch.equal(unbiased.sort().values, chosen.sort().values)  # the bias matters on these inputs


@given(st.integers(min_value=1, max_value=9))
def test_from_row_and_as_row_are_inverses(n: int) -> None:
    t = torch.arange(n, dtype=torch.float32)
    assert torch.equal(from_row(as_row(t)), t)
    assert torch.equal(as_row(from_row(t[None])), t[None])


@pytest.mark.parametrize("overrides, match", [
    (dict(use_bias=True), "use_bias"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(moe_k=8), "moe_k"),
    (dict(moe_layer_start_index=3), "at least one MoE layer"),
])
def test_unrepresentable_configs_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Ernie45MoEBridge().provider_bridge(Ernie4_5_MoeConfig(**{**TINY, **overrides}))


def test_a_release_without_a_router_slot_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(compat.FEATURES, "moe_router_submodule", lambda: False)
    provider = Ernie45MoEBridge().provider_bridge(Ernie4_5_MoeConfig(**TINY))
    with pytest.raises(UnsupportedFeatureError, match="no router slot"):
        provider.finalize()


@pytest.mark.slow
def test_expert_parallel_ep2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    _, path = _checkpoint("shared_tied", tmp_path)
    rep = _torchrun(path, 1, 1, tmp_path / "out", ep=2)
    assert (rep["world_size"], rep["ep"]) == (2, 2)
    assert rep["max_abs_diff"] <= PARITY_ATOL, rep
    assert rep["export_bit_exact"], rep["export_mismatches"]


def test_a_spec_without_a_router_slot_is_refused_not_left_on_mcore_routing() -> None:
    """A spec the router cannot be put into (here: no MoE layer at all) raises instead of routing as MCore does."""
    from bridge.models.ernie4_5_moe.spec import with_biased_softmax_router

    dense = compat.local_layer_spec(normalization="RMSNorm", num_experts=None, moe_grouped_gemm=False)
    with pytest.raises(UnsupportedFeatureError, match="no MoE layer with a router slot"):
        with_biased_softmax_router(dense, norm_min=1e-12)
