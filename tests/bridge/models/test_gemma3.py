"""Gemma 3 (text): QK norms, local/global layers with two RoPE bases, post-norms, embedding scale, against HF."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from bridge.errors import ConfigError
from bridge.models._mcore_layers import PerLayerRopeSelfAttention
from bridge.models._norms import ZeroCenteredRMSNorm
from bridge.models.gemma3.bridge import Gemma3Bridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

# Two sliding layers (window 6 < 17 tokens) then a global one, as Gemma 3's 5:1 pattern in small.
TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=128, initializer_range=0.2,
            query_pre_attn_scalar=16, sliding_window=6, pad_token_id=0,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"])
# Bases far apart so that mixing them up shows; linear scaling on the global layers, as Gemma 3 4B+.
ROPE = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = Gemma3TextConfig(**TINY, rope_parameters=ROPE)
    return make_checkpoint(tmp_path_factory.mktemp("gemma3") / "hf", config, Gemma3ForCausalLM)


def test_parity_and_bit_exact_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    bridge, model = build(checkpoint)
    layers = model[0].decoder.layers
    assert all(isinstance(layer.self_attention, PerLayerRopeSelfAttention) for layer in layers)
    assert [layer.self_attention.local_rotary is not None for layer in layers] == [True, True, False]
    assert isinstance(layers[0].self_attention.q_layernorm, ZeroCenteredRMSNorm)
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, checkpoint, tmp_path / "out", ids)
    assert "model.layers.2.self_attn.q_norm.weight" in exported and "lm_head.weight" not in exported


def test_untied_default_rope_parity(tmp_path: Path) -> None:
    config = Gemma3TextConfig(**TINY, tie_word_embeddings=False, final_logit_softcapping=3.0)
    path = make_checkpoint(tmp_path / "hf", config, Gemma3ForCausalLM)
    bridge, model = build(path)
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, path, ids, TINY["vocab_size"]) <= PARITY_ATOL
    assert "lm_head.weight" in assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)


@pytest.mark.parametrize("field, wrong", [
    ("local_rotary_base", None),  # every layer on the global base
    ("local_rotary_base", 1_000_000.0),
    ("seq_len_interpolation_factor", None),  # the global layers' linear scaling left out
])
def test_each_rope_choice_changes_the_answer(checkpoint: Path, field: str, wrong: object) -> None:
    _, model = build(checkpoint, **{field: wrong})
    assert max_abs_diff(model, checkpoint, token_ids(TINY["vocab_size"]), TINY["vocab_size"]) > 1e-3


def test_scaled_local_rope_is_refused() -> None:
    rope = {**ROPE, "sliding_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10_000.0}}
    with pytest.raises(ConfigError, match="sliding layers' RoPE"):
        Gemma3Bridge().provider_bridge(Gemma3TextConfig(**TINY, rope_parameters=rope))


def test_transformers4_flat_rope_fields_are_read() -> None:
    from bridge.models.gemma3.provider import layer_type_rope

    flat = {"rope_theta": 1e6, "rope_local_base_freq": 1e4, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}
    assert layer_type_rope(flat) == ({"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}, {"rope_theta": 1e4})
