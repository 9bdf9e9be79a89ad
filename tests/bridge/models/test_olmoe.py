"""OLMoE: RMSNorm over the whole query/key projection (a custom norm in the layer spec), softmax top-k routing,
against HF on CPU (fp32, eager); EP=2 (slow).

Measured with MCore 0.16.1 (max |logit diff|, budget 1e-5): softmax_topk 2.7e-6, norm_topk_tied 3.2e-6;
rounding in the MoE block, as for Qwen3-MoE (HF against itself, eager vs grouped_mm experts, differs alike).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import OlmoeConfig, OlmoeForCausalLM

from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.models.olmoe.bridge import OLMoEBridge
from bridge.models.olmoe.spec import WholeProjectionRMSNorm, with_whole_projection_qk_norm
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)
from tests.bridge.test_distributed import _torchrun

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, max_position_embeddings=128,
            initializer_range=0.2, pad_token_id=1, eos_token_id=2)
VARIANTS = {
    "softmax_topk": dict(norm_topk_prob=False),  # OLMoE-1B-7B's routing
    "norm_topk_tied": dict(norm_topk_prob=True, tie_word_embeddings=True),
}


def _checkpoint(name: str, root: Path) -> tuple[dict, Path]:
    cfg = {**TINY, **VARIANTS[name]}
    return cfg, make_checkpoint(root / "hf", OlmoeConfig(**cfg), OlmoeForCausalLM)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    return _checkpoint(request.param, tmp_path_factory.mktemp(f"olmoe-{request.param}"))


def test_parity_and_bit_exact_round_trip(variant: tuple[dict, Path], tmp_path: Path, fresh_parallel_state) -> None:
    cfg, path = variant
    bridge, model = build(path)
    attention = model[0].decoder.layers[0].self_attention
    assert isinstance(attention.q_layernorm, WholeProjectionRMSNorm)
    assert (attention.q_layernorm.weight.shape, attention.k_layernorm.weight.shape) == ((64,), (32,))
    ids = token_ids(cfg["vocab_size"])
    assert max_abs_diff(model, path, ids, cfg["vocab_size"]) <= PARITY_ATOL
    assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)


def test_the_norm_spans_every_head(variant: tuple[dict, Path], fresh_parallel_state) -> None:
    """The loaded k_norm equals HF's; it normalises over both heads, which per-head normalisation would not."""
    _, path = variant
    _, model = build(path)
    hf = load_file(path / "model.safetensors")
    norm = model[0].decoder.layers[1].self_attention.k_layernorm
    assert torch.equal(norm.weight, hf["model.layers.1.self_attn.k_norm.weight"])
    x = torch.randn(3, 2, 2, 16, generator=torch.Generator().manual_seed(0))
    whole = norm(x)
    per_head = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight.view(2, 16)
    assert not torch.allclose(whole, per_head, atol=1e-3)
    flat = x.reshape(3, 2, 32)
    expected = flat * torch.rsqrt(flat.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight
    assert torch.equal(whole, expected.reshape(x.shape))


@pytest.mark.parametrize("form", ["layer", "block_module_spec", "block_submodules"])
def test_the_norm_reaches_every_spec_form(form: str) -> None:
    """Releases before 0.12 hand MoE families a block ``ModuleSpec`` (the 0.11.0 matrix cell failed with
    ``'TransformerBlockSubmodules' object has no attribute 'self_attention'``); every form gets the norm, and the
    input spec is left as it was."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_block import TransformerBlock, TransformerBlockSubmodules

    layer = get_gpt_layer_local_spec(num_experts=4, moe_grouped_gemm=False, qk_layernorm=True)
    before = layer.submodules.self_attention.submodules.q_layernorm
    block = TransformerBlockSubmodules(layer_specs=[layer, layer])
    spec = {"layer": layer, "block_module_spec": ModuleSpec(module=TransformerBlock, submodules=block),
            "block_submodules": block}[form]
    out = with_whole_projection_qk_norm(spec)
    submodules = out if form == "block_submodules" else out.submodules
    layers = submodules.layer_specs if form != "layer" else [out]
    assert len(layers) == (1 if form == "layer" else 2)
    for edited in layers:
        attn = edited.submodules.self_attention.submodules
        assert attn.q_layernorm.module is WholeProjectionRMSNorm and attn.q_layernorm.params == {"heads": "query"}
        assert attn.k_layernorm.module is WholeProjectionRMSNorm and attn.k_layernorm.params == {"heads": "key"}
    assert layer.submodules.self_attention.submodules.q_layernorm is before


@pytest.mark.parametrize("overrides, match", [
    (dict(clip_qkv=8.0), "clip_qkv"),
    (dict(num_experts_per_tok=1, norm_topk_prob=True), "no MCore counterpart"),
    (dict(attention_bias=True), "attention_bias"),
])
def test_unrepresentable_configs_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        OLMoEBridge().provider_bridge(OlmoeConfig(**{**TINY, **overrides}))


def test_tensor_parallelism_is_refused() -> None:
    provider = OLMoEBridge().provider_bridge(OlmoeConfig(**TINY))
    provider.tensor_model_parallel_size = 2
    with pytest.raises(UnsupportedFeatureError, match="use TP=1"):
        provider.finalize()


@pytest.mark.slow
def test_expert_parallel_ep2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    _, path = _checkpoint("softmax_topk", tmp_path)
    rep = _torchrun(path, 1, 1, tmp_path / "out", ep=2)
    assert (rep["world_size"], rep["ep"]) == (2, 2)
    assert rep["max_abs_diff"] <= PARITY_ATOL, rep
    assert rep["export_bit_exact"], rep["export_mismatches"]
