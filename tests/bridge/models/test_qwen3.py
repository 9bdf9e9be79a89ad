"""Qwen3: per-head QK RMSNorm and head_dim independent of hidden_size / heads, against HF on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from bridge.errors import ConfigError
from bridge.models.qwen3.bridge import Qwen3Bridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

# head_dim 32 while hidden_size / heads = 16: projections are 4*32 = 128 wide on a 64-wide model.
TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, max_position_embeddings=128, initializer_range=0.2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("qwen3") / "hf", Qwen3Config(**TINY), Qwen3ForCausalLM)


def test_qk_norm_parity_and_bit_exact_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    bridge, model = build(checkpoint)
    cfg = model[0].config
    assert cfg.qk_layernorm and cfg.kv_channels == 32 and cfg.hidden_size == 64
    attention = model[0].decoder.layers[0].self_attention
    assert attention.q_layernorm.weight.shape == (32,) and attention.k_layernorm.weight.shape == (32,)
    assert attention.linear_proj.weight.shape == (64, 4 * 32)
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, checkpoint, tmp_path / "out", ids)
    assert {n for n in exported if n.endswith(("q_norm.weight", "k_norm.weight"))} == {
        f"model.layers.{i}.self_attn.{p}_norm.weight" for i in range(2) for p in "qk"
    }


def test_q_and_k_norms_are_not_swapped(checkpoint: Path) -> None:
    from safetensors.torch import load_file

    _, model = build(checkpoint)
    hf = load_file(checkpoint / "model.safetensors")
    attention = model[0].decoder.layers[1].self_attention
    assert torch.equal(attention.q_layernorm.weight, hf["model.layers.1.self_attn.q_norm.weight"])
    assert torch.equal(attention.k_layernorm.weight, hf["model.layers.1.self_attn.k_norm.weight"])
    assert not torch.equal(attention.q_layernorm.weight, attention.k_layernorm.weight)


def test_attention_bias_is_refused() -> None:
    """Qwen3's attention_bias also adds o_proj bias, which MCore only has with MLP biases (add_bias_linear)."""
    with pytest.raises(ConfigError, match="add_bias_linear"):
        Qwen3Bridge().provider_bridge(Qwen3Config(**TINY, attention_bias=True))
