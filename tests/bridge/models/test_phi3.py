"""Phi-3: fused ``qkv_proj`` and ``gate_up_proj``, sliding window, partial rotary (Phi-4-mini), against HF on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import Phi3Config, Phi3ForCausalLM

from bridge.errors import ConfigError
from bridge.models.phi3.bridge import Phi3Bridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2, pad_token_id=0, eos_token_id=1)
PARTIAL = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("phi3") / "hf", Phi3Config(**TINY, sliding_window=6),
                           Phi3ForCausalLM)


@pytest.fixture(scope="module")
def tied_partial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = Phi3Config(**TINY, tie_word_embeddings=True, rope_parameters=PARTIAL)
    return make_checkpoint(tmp_path_factory.mktemp("phi3_tied") / "hf", config, Phi3ForCausalLM)


def test_windowed_parity_and_bit_exact_round_trip(windowed: Path, tmp_path: Path) -> None:
    bridge, model = build(windowed)
    assert model[0].config.window_size == (5, 0)
    ids = token_ids(TINY["vocab_size"])  # 17 tokens: longer than the window
    assert max_abs_diff(model, windowed, ids, TINY["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, windowed, tmp_path / "out", ids)
    assert "model.layers.0.self_attn.qkv_proj.weight" in exported and "model.layers.1.mlp.gate_up_proj.weight" in exported
    assert not any(name.endswith(("q_proj.weight", "gate_proj.weight")) for name in exported)


def test_tied_partial_rotary_parity_and_bit_exact_round_trip(tied_partial: Path, tmp_path: Path) -> None:
    bridge, model = build(tied_partial)
    assert model[0].rotary_pos_emb.inv_freq.numel() == 16 * 0.5 // 2 and model[0].share_embeddings_and_output_weights
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, tied_partial, ids, TINY["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, tied_partial, tmp_path / "out", ids)
    assert "lm_head.weight" not in exported


def test_partial_rotary_matters(tied_partial: Path) -> None:
    """Rotating every channel instead of half of them gives other logits."""
    _, model = build(tied_partial, rotary_percent=1.0)
    assert max_abs_diff(model, tied_partial, token_ids(TINY["vocab_size"]), TINY["vocab_size"]) > 1e-3


def test_fused_tensors_split_where_hf_splits_them(windowed: Path) -> None:
    """``gate_up_proj`` is ``cat(gate, up)`` (HF chunks it in that order); ``qkv_proj`` is q, then k, then v."""
    _, model = build(windowed)
    hf = load_file(windowed / "model.safetensors")
    layer = model[0].decoder.layers[1]
    assert torch.equal(layer.mlp.linear_fc1.weight, hf["model.layers.1.mlp.gate_up_proj.weight"])
    qkv = hf["model.layers.1.self_attn.qkv_proj.weight"]
    head = 16
    # MCore interleaves per query group: [q0, q1, k0, v0] for group 0 (4 heads, 2 groups).
    first_group = layer.self_attention.linear_qkv.weight[: 4 * head]
    assert torch.equal(first_group[: 2 * head], qkv[: 2 * head])  # q heads 0, 1
    assert torch.equal(first_group[2 * head: 3 * head], qkv[4 * head: 5 * head])  # k head 0
    assert torch.equal(first_group[3 * head:], qkv[6 * head: 7 * head])  # v head 0


def test_longrope_is_refused() -> None:
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0] * 8, "long_factor": [2.0] * 8}
    config = Phi3Config(**{**TINY, "max_position_embeddings": 256}, original_max_position_embeddings=128,
                        rope_parameters=rope)
    with pytest.raises(ConfigError, match="longrope"):
        Phi3Bridge().provider_bridge(config)
