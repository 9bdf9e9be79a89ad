"""Gemma (v1): zero-centred RMSNorm, sqrt(hidden) embedding scale, GeGLU-tanh, tied embeddings, head_dim."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GemmaConfig, GemmaForCausalLM
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

from bridge.errors import ConfigError
from bridge.models.gemma.bridge import GemmaBridge
from bridge.models._norms import ZeroCenteredRMSNorm
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

# Gemma-2B's shape, shrunk: MQA and head_dim (32) != hidden_size / heads (16).
TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=1, head_dim=32, max_position_embeddings=128, initializer_range=0.2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("gemma") / "hf", GemmaConfig(**TINY), GemmaForCausalLM)


def test_parity_and_bit_exact_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    bridge, model = build(checkpoint)
    cfg = model[0].config
    assert cfg.layernorm_zero_centered_gamma and cfg.kv_channels == 32 and cfg.num_query_groups == 1
    assert model[0].share_embeddings_and_output_weights
    norms = [model[0].decoder.final_layernorm, model[0].decoder.layers[0].input_layernorm,
             model[0].decoder.layers[1].pre_mlp_layernorm]
    assert all(isinstance(n, ZeroCenteredRMSNorm) for n in norms)
    ids = token_ids(TINY["vocab_size"])
    assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, checkpoint, tmp_path / "out", ids)
    assert "lm_head.weight" not in exported  # tied, as HF saves it


def test_norm_weights_stay_zero_centred(checkpoint: Path) -> None:
    """Weights are copied, not shifted by one (which would not round-trip bit-exactly)."""
    from safetensors.torch import load_file

    _, model = build(checkpoint)
    hf = load_file(checkpoint / "model.safetensors")
    assert torch.equal(model[0].decoder.final_layernorm.weight, hf["model.norm.weight"])
    assert hf["model.norm.weight"].abs().mean() < 0.5  # centred on 0, not 1


def test_embedding_scale_is_applied(checkpoint: Path) -> None:
    _, model = build(checkpoint)
    ids = token_ids(TINY["vocab_size"], batch=1, seq=5)
    out = model[0].embedding(input_ids=ids, position_ids=torch.arange(5)[None])
    raw = model[0].embedding.word_embeddings.weight[ids[0]]
    assert torch.equal(out[:, 0], raw * torch.tensor(64**0.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_zero_centered_norm_matches_hf_bit_for_bit(dtype: torch.dtype) -> None:
    from types import SimpleNamespace

    gen = torch.Generator().manual_seed(0)
    ours = ZeroCenteredRMSNorm(SimpleNamespace(params_dtype=dtype), 64, eps=1e-6)
    theirs = GemmaRMSNorm(64, eps=1e-6).to(dtype)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(64, generator=gen))
        theirs.weight.copy_(ours.weight)
    x = torch.randn(3, 5, 64, generator=gen).to(dtype)
    assert torch.equal(ours(x), theirs(x))


def test_unrepresentable_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="add_bias_linear"):
        GemmaBridge().provider_bridge(GemmaConfig(**TINY, attention_bias=True))
    with pytest.raises(ConfigError, match="hidden_act"):
        GemmaBridge().provider_bridge(GemmaConfig(**TINY, hidden_act="silu"))


def test_requirements_name_the_zero_centred_gamma_and_block_spec() -> None:
    (req,) = GemmaBridge.requirements()
    assert "layernorm_zero_centered_gamma" in req.config_fields
    assert "megatron.core.transformer.transformer_block" in req.modules
