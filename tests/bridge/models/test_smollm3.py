"""SmolLM3: a Llama with NoPE layers (every ``no_rope_layer_interval``-th layer applies no RoPE), tied
by default, optional sliding window on the NoPE layers, against HF on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import SmolLM3Config, SmolLM3ForCausalLM

from bridge.models._mcore_layers import PerLayerRopeSelfAttention
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

# Layers 2 and 4 (1-based) are NoPE, as every 4th layer of SmolLM3-3B.
TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2, no_rope_layer_interval=2,
            pad_token_id=0, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("smollm3") / "hf", SmolLM3Config(**TINY), SmolLM3ForCausalLM)


def test_tied_parity_and_bit_exact_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    bridge, model = build(checkpoint)
    layers = model[0].decoder.layers
    assert all(isinstance(layer.self_attention, PerLayerRopeSelfAttention) for layer in layers)
    assert layers[1].self_attention.nope_layers == {2, 4}
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"]) <= PARITY_ATOL
    assert "lm_head.weight" not in assert_bit_exact_export(bridge, model, checkpoint, tmp_path / "out", ids)


def test_untied_with_sliding_nope_layers(tmp_path: Path) -> None:
    config = SmolLM3Config(**TINY, tie_word_embeddings=False, use_sliding_window=True, sliding_window=6)
    assert config.layer_types == ["full_attention", "sliding_attention"] * 2
    path = make_checkpoint(tmp_path / "hf", config, SmolLM3ForCausalLM)
    bridge, model = build(path)
    assert model[0].config.window_attn_skip_freq == [0, 1, 0, 1]
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, path, ids, TINY["vocab_size"]) <= PARITY_ATOL
    assert "lm_head.weight" in assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)


@pytest.mark.parametrize("nope_layers", [(), (1, 3)])
def test_nope_layers_matter(checkpoint: Path, nope_layers: tuple[int, ...]) -> None:
    """RoPE on every layer, or on the wrong ones, gives other logits."""
    _, model = build(checkpoint, nope_layers=nope_layers)
    assert max_abs_diff(model, checkpoint, token_ids(TINY["vocab_size"]), TINY["vocab_size"]) > 1e-3
