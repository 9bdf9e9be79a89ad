"""Nemotron: LayerNorm1P (zero-centred, with bias), squared-ReLU MLP without a gate, partial rotary, against HF."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import NemotronConfig, NemotronForCausalLM
from transformers.models.nemotron.modeling_nemotron import NemotronLayerNorm1P

from bridge.errors import ConfigError
from bridge.models._norms import ZeroCenteredLayerNorm
from bridge.models.nemotron.bridge import NemotronBridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("nemotron") / "hf", NemotronConfig(**TINY), NemotronForCausalLM)


def test_parity_and_bit_exact_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    bridge, model = build(checkpoint)
    layer = model[0].decoder.layers[0]
    assert isinstance(layer.input_layernorm, ZeroCenteredLayerNorm)
    assert isinstance(model[0].decoder.final_layernorm, ZeroCenteredLayerNorm)
    assert layer.mlp.linear_fc1.weight.shape == (128, 64)  # no gate half
    assert model[0].rotary_pos_emb.inv_freq.numel() == 16 // 2 // 2  # partial_rotary_factor 0.5
    ids = token_ids(TINY["vocab_size"])
    # head_dim 16: the softmax scale 0.25 is exact, so nothing rounds differently from HF.
    assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"]) == 0.0
    exported = assert_bit_exact_export(bridge, model, checkpoint, tmp_path / "out", ids)
    assert "model.layers.1.post_attention_layernorm.bias" in exported and "model.norm.bias" in exported


def test_tied_parity_and_bit_exact_round_trip(tmp_path: Path) -> None:
    """head_dim 32 (!= hidden / heads). Its softmax scale 32**-0.5 is inexact, and MCore applies it as
    ``baddbmm(alpha=scale)`` where HF multiplies the product: scores differ by an ulp (7.6e-6 on
    scores of magnitude ~100), which the 2-layer, init-range-0.2 model of the other tests grows to
    2e-5 on logits of ~14 (1.5e-6 relative; Phi-3 with the same head_dim shows the same). With the
    usual init range the logits stay within the budget."""
    config = NemotronConfig(**{**TINY, "initializer_range": 0.02}, head_dim=32, tie_word_embeddings=True)
    path = make_checkpoint(tmp_path / "hf", config, NemotronForCausalLM)
    bridge, model = build(path)
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, path, ids, TINY["vocab_size"]) <= PARITY_ATOL
    assert "lm_head.weight" not in assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)


def test_squared_relu_and_partial_rotary_matter(checkpoint: Path) -> None:
    ids = token_ids(TINY["vocab_size"])
    for field, wrong in (("activation", "relu"), ("rotary_percent", 1.0)):
        _, model = build(checkpoint, **{field: wrong})
        assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"]) > 1e-3, field


def test_layernorm_1p_matches_hf_bit_for_bit() -> None:
    torch.manual_seed(0)
    ours = ZeroCenteredLayerNorm(SimpleNamespace(params_dtype=torch.float32), 64, eps=1e-5)
    ref = NemotronLayerNorm1P(64, eps=1e-5)
    with torch.no_grad():
        for p in (ours.weight, ours.bias):
            p.normal_()
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    x = torch.randn(3, 5, 64) * 4
    assert torch.equal(ours(x), ref(x))


@pytest.mark.parametrize("change", [{"hidden_act": "silu"}, {"attention_bias": True}, {"mlp_bias": True}])
def test_what_the_bridge_cannot_express_is_refused(change: dict) -> None:
    with pytest.raises(ConfigError, match="expected Nemotron hidden_act|attention_bias"):
        NemotronBridge().provider_bridge(NemotronConfig(**TINY, **change))
