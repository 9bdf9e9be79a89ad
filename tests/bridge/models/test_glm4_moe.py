"""GLM-4-MoE: partial rotary, QKV biases or per-head QK norms, DeepSeek-V3's sigmoid routing with expert bias
(and groups), shared experts and a leading dense layer, against HF on CPU (fp32, eager); EP=2 (slow).

Measured with MCore 0.16.1 (max |logit diff|): qk_norm_groups_tied 6.0e-6 (budget 1e-5), qkv_bias 1.07e-5
on logits up to 6.4, over the 1e-5 budget by rounding, shown per component on HF's own layer inputs: the
dense MLP matches exactly; the MoE blocks differ by 6.7e-6 and 7.6e-6 on outputs up to 29 in fp32 (3-4 ulps)
and by 1e-14 in float64 (the same maths: :func:`test_moe_block_is_the_same_maths_in_float64` checks it);
attention differs by 5.3e-6 on outputs up to 14 in fp32 and 1e-6 in float64 (HF's eager softmax stays fp32).
The tiny model's large weights (initializer_range 0.2, + 0.1 noise) amplify those ulps through the layers,
so the qkv_bias variant is held to :data:`ROUNDING_ATOL` and the other to the common budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import Glm4MoeConfig, Glm4MoeForCausalLM

from bridge.errors import ConfigError
from bridge.models.glm4_moe.bridge import Glm4MoEBridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)
from tests.bridge.test_distributed import _torchrun

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=32, n_routed_experts=4, num_experts_per_tok=2,
            n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1, routed_scaling_factor=2.5,
            norm_topk_prob=True, max_position_embeddings=128, initializer_range=0.2,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5})
ROUNDING_ATOL = 2e-5  # the qkv_bias variant: fp32 rounding only (see the module docstring)
VARIANTS = {
    "qkv_bias": dict(attention_bias=True),  # GLM-4.5's attention
    "qk_norm_groups_tied": dict(use_qk_norm=True, n_group=2, topk_group=1, tie_word_embeddings=True),
}


def _with_expert_bias(cfg: Any) -> torch.nn.Module:
    """HF's model with a routing-changing ``e_score_correction_bias`` (zeros after HF's initialisation)."""
    model = Glm4MoeForCausalLM(cfg)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, buf in sorted(model.named_buffers()):
            if name.endswith("e_score_correction_bias"):
                buf.copy_(torch.randn(buf.shape, generator=gen) * 0.5)
    return model


def _checkpoint(name: str, root: Path) -> tuple[Any, Path]:
    cfg = Glm4MoeConfig(**{**TINY, **VARIANTS[name]})
    return cfg, make_checkpoint(root / "hf", cfg, _with_expert_bias)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    return _checkpoint(request.param, tmp_path_factory.mktemp(f"glm4_moe-{request.param}"))


def test_parity_and_bit_exact_round_trip(variant: tuple[Any, Path], tmp_path: Path, fresh_parallel_state) -> None:
    cfg, path = variant
    bridge, model = build(path)
    mcore = model[0].config
    assert (mcore.add_qkv_bias, mcore.qk_layernorm) == (cfg.attention_bias, cfg.use_qk_norm)
    assert (mcore.moe_router_score_function, mcore.moe_router_enable_expert_bias) == ("sigmoid", True)
    layers = model[0].decoder.layers
    assert [type(layer.mlp).__name__ for layer in layers] == ["MLP", "MoELayer", "MoELayer"]
    ids = token_ids(cfg.vocab_size)
    assert max_abs_diff(model, path, ids, cfg.vocab_size) <= (ROUNDING_ATOL if cfg.attention_bias else PARITY_ATOL)
    exported = assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)
    assert sorted(n for n in exported if n.endswith("e_score_correction_bias")) == [
        f"model.layers.{i}.mlp.gate.e_score_correction_bias" for i in (1, 2)]


def test_partial_rotary_is_what_the_model_applies(variant: tuple[Any, Path], fresh_parallel_state) -> None:
    """MCore's rotary embedding of a 32-wide head covers 16 channels, as HF's partial_rotary_factor 0.5."""
    cfg, path = variant
    _, model = build(path)
    assert model[0].rotary_pos_emb.inv_freq.numel() * 2 == int(cfg.head_dim * 0.5)
    hf = load_file(path / "model.safetensors")
    router = model[0].decoder.layers[2].mlp.router
    assert torch.equal(router.expert_bias, hf["model.layers.2.mlp.gate.e_score_correction_bias"])


@torch.no_grad()
def test_moe_block_is_the_same_maths_in_float64(variant: tuple[Any, Path], fresh_parallel_state) -> None:
    """On equal inputs the MoE blocks (router, experts, shared expert) of HF and MCore agree to 1e-12 in float64:
    their fp32 difference is rounding, not a mapping or routing error."""
    from transformers import AutoModelForCausalLM

    cfg, path = variant
    _, model = build(path)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, experts_implementation="eager")
    x = torch.randn(2, 9, cfg.hidden_size, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3
    ours, theirs = model[0].decoder.layers[2].mlp.double(), hf.model.layers[2].mlp.double()
    out = ours(x.transpose(0, 1).contiguous())[0].transpose(0, 1)
    assert (out - theirs(x)).abs().max().item() < 1e-12


@pytest.mark.parametrize("overrides, match", [
    (dict(norm_topk_prob=False), "norm_topk_prob"),
    (dict(n_routed_experts=8, n_group=4, topk_group=2), "top-2"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(first_k_dense_replace=3), "at least one MoE layer"),
])
def test_unrepresentable_configs_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Glm4MoEBridge().provider_bridge(Glm4MoeConfig(**{**TINY, **overrides}))


@pytest.mark.slow
def test_expert_parallel_ep2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    _, path = _checkpoint("qkv_bias", tmp_path)
    rep = _torchrun(path, 1, 1, tmp_path / "out", ep=2)
    assert (rep["world_size"], rep["ep"]) == (2, 2)
    assert rep["max_abs_diff"] <= ROUNDING_ATOL, rep  # measured 1.2e-5, as at EP=1 on these tokens
    assert rep["export_bit_exact"], rep["export_mismatches"]
