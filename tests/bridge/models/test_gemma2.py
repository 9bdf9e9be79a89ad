"""Gemma 2: post-attention/post-MLP norms, attention and final logit soft-capping, query_pre_attn_scalar,
alternating sliding-window layers, tied embeddings, against HF on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM

from bridge.errors import ConfigError
from bridge.models._mcore_layers import RowParallelLinearWithPostNorm, SoftCappedDotProductAttention
from bridge.models.gemma2.bridge import Gemma2Bridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

# Small caps so that soft-capping changes the answer; window 6 < the 17 test tokens; scalar 64 -> scale 1/8.
TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=128, initializer_range=0.2,
            query_pre_attn_scalar=64, sliding_window=6, attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
            pad_token_id=0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("gemma2") / "hf", Gemma2Config(**TINY), Gemma2ForCausalLM)


@pytest.fixture(scope="module")
def built(checkpoint: Path):
    return build(checkpoint)


def test_parity_and_bit_exact_round_trip(checkpoint: Path, built, tmp_path: Path) -> None:
    bridge, model = built
    layer = model[0].decoder.layers[0]
    assert isinstance(layer.self_attention.linear_proj, RowParallelLinearWithPostNorm)
    assert isinstance(layer.mlp.linear_fc2, RowParallelLinearWithPostNorm)
    assert isinstance(layer.self_attention.core_attention, SoftCappedDotProductAttention)
    assert model[0].config.window_attn_skip_freq == [1, 0] and model[0].config.softmax_scale == 0.125
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, checkpoint, tmp_path / "out", ids)
    assert "lm_head.weight" not in exported  # tied, as Gemma 2 is
    assert {n for n in exported if n.startswith("model.layers.1.") and "layernorm" in n} == {
        f"model.layers.1.{k}_layernorm.weight" for k in ("input", "post_attention", "pre_feedforward", "post_feedforward")
    }


def test_untied_without_attention_softcap(tmp_path: Path) -> None:
    config = Gemma2Config(**{**TINY, "attn_logit_softcapping": None}, tie_word_embeddings=False)
    path = make_checkpoint(tmp_path / "hf", config, Gemma2ForCausalLM)
    bridge, model = build(path)
    assert not isinstance(model[0].decoder.layers[0].self_attention.core_attention, SoftCappedDotProductAttention)
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, path, ids, TINY["vocab_size"]) <= PARITY_ATOL
    assert "lm_head.weight" in assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)


@pytest.mark.parametrize("field, wrong", [
    ("attn_logit_softcapping", None),
    ("final_logit_softcapping", None),
    ("window_size", None),
])
def test_each_gemma2_feature_changes_the_answer(checkpoint: Path, field: str, wrong: object) -> None:
    _, model = build(checkpoint, **{field: wrong})
    assert max_abs_diff(model, checkpoint, token_ids(TINY["vocab_size"]), TINY["vocab_size"]) > 1e-3, field


def test_final_softcap_bounds_the_logits(built) -> None:
    from bridge.inference import forward_logits

    _, model = built
    logits = forward_logits(model, token_ids(TINY["vocab_size"]), vocab_size=TINY["vocab_size"])
    assert logits.abs().max() < 3.0


def test_rope_scaling_is_refused() -> None:
    config = Gemma2Config(**TINY, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    with pytest.raises(ConfigError, match="RoPE scaling"):
        Gemma2Bridge().provider_bridge(config)
