"""Qwen2: QKV bias (add_qkv_bias) and per-layer sliding windows, against HF on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from bridge.models.qwen2.bridge import Qwen2Bridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("qwen2") / "hf", Qwen2Config(**TINY), Qwen2ForCausalLM)


def test_qkv_bias_parity_and_bit_exact_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    bridge, model = build(checkpoint)
    assert model[0].config.add_qkv_bias and not model[0].config.add_bias_linear
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, checkpoint, tmp_path / "out", ids)
    biases = sorted(n for n in exported if n.endswith(".bias"))
    assert biases == sorted(f"model.layers.{i}.self_attn.{p}_proj.bias" for i in range(2) for p in "qkv")
    assert all(exported[n].abs().sum() > 0 for n in biases)


def test_bias_is_interleaved_per_query_group(checkpoint: Path) -> None:
    """The bias takes the weight's per-group [q..., k, v] layout: a bias row follows its weight row."""
    from safetensors.torch import load_file

    _, model = build(checkpoint)
    hf = load_file(checkpoint / "model.safetensors")
    qkv = model[0].decoder.layers[0].self_attention.linear_qkv
    d, groups, q_per_group = 16, 2, 2
    q_bias = hf["model.layers.0.self_attn.q_proj.bias"].view(groups, q_per_group * d)
    k_bias = hf["model.layers.0.self_attn.k_proj.bias"].view(groups, d)
    rows = qkv.bias.detach().view(groups, (q_per_group + 2) * d)
    assert torch.equal(rows[:, : q_per_group * d], q_bias)
    assert torch.equal(rows[:, q_per_group * d : (q_per_group + 1) * d], k_bias)


def test_sliding_window_on_later_layers_only(tmp_path: Path) -> None:
    """use_sliding_window with max_window_layers=1: layer 0 full, layer 1 windowed (window 4 < 17 tokens)."""
    cfg = Qwen2Config(**TINY, use_sliding_window=True, sliding_window=4, max_window_layers=1)
    assert cfg.layer_types == ["full_attention", "sliding_attention"]
    src = make_checkpoint(tmp_path / "hf", cfg, Qwen2ForCausalLM)
    provider = Qwen2Bridge().provider_bridge(cfg)
    assert provider.window_size == (3, 0) and provider.window_attn_skip_freq == [0, 1]
    _, model = build(src)
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, src, ids, TINY["vocab_size"]) <= PARITY_ATOL
    # the window matters for these tokens: HF without it is far from our logits
    assert max_abs_diff(model, src, ids, TINY["vocab_size"], layer_types=["full_attention"] * 2) > 1e-3


def test_window_switched_off_sets_no_window() -> None:
    cfg = Qwen2Config(**TINY, use_sliding_window=False, sliding_window=4)
    provider = Qwen2Bridge().provider_bridge(cfg)
    assert provider.window_size is None and "window_attn_skip_freq" not in provider.config_overrides
