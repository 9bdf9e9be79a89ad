"""Granite: a Llama with embedding, residual, attention and logit multipliers, against HF on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import GraniteConfig, GraniteForCausalLM

from bridge.models._mcore_layers import ScaledRowParallelLinear
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2, embedding_multiplier=12.0,
            residual_multiplier=0.22, attention_multiplier=0.125, logits_scaling=8.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("granite") / "hf", GraniteConfig(**TINY), GraniteForCausalLM)


def test_parity_and_bit_exact_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    bridge, model = build(checkpoint)
    layer = model[0].decoder.layers[1]
    assert isinstance(layer.self_attention.linear_proj, ScaledRowParallelLinear)
    assert isinstance(layer.mlp.linear_fc2, ScaledRowParallelLinear)
    assert model[0].config.softmax_scale == 0.125
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"]) <= PARITY_ATOL
    assert "lm_head.weight" in assert_bit_exact_export(bridge, model, checkpoint, tmp_path / "out", ids)


def test_tied_parity_and_bit_exact_round_trip(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "hf", GraniteConfig(**TINY, tie_word_embeddings=True), GraniteForCausalLM)
    bridge, model = build(path)
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, path, ids, TINY["vocab_size"]) <= PARITY_ATOL
    assert "lm_head.weight" not in assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)


@pytest.mark.parametrize("field", ["embedding_multiplier", "residual_multiplier", "logits_scaling"])
def test_each_multiplier_matters(checkpoint: Path, field: str) -> None:
    _, model = build(checkpoint, **{field: 1.0})
    assert max_abs_diff(model, checkpoint, token_ids(TINY["vocab_size"]), TINY["vocab_size"]) > 1e-3


def test_the_attention_multiplier_matters(checkpoint: Path) -> None:
    _, model = build(checkpoint)
    model[0].decoder.layers[0].self_attention.core_attention.softmax_scale = 0.25
    assert max_abs_diff(model, checkpoint, token_ids(TINY["vocab_size"]), TINY["vocab_size"]) > 1e-3
