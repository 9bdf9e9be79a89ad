"""DeepSeek-V2 / V2-Lite: MLA with and without query LoRA, DeepSeek-V2's softmax router (greedy and
group-limited), shared experts and leading dense layers, against HF on CPU (fp32, eager); EP=2 (slow).

Measured with MCore 0.16.1 (max |logit diff|, budget 1e-5): lite 6.7e-6, q_lora_groups_yarn_tied 6.0e-6 on
logits up to ~7 (HF against itself, eager vs grouped_mm experts: 2.2e-6 and 2.9e-6). Per component on equal
inputs (lite, layer 0): input norm and dense MLP 0.0, MLA attention 1.7e-6 on outputs up to 4.7 (HF's V2
rotates complex pairs where MCore de-interleaves and rotates halves: the same products, rounded apart),
the MoE block 2.4e-6 on outputs up to 20 (summation order). With initializer_range 0.2 the MLPs amplify
those ulps: on the 16-token input of ``bridge.parity`` the logits differ by 2.0e-5, at EP=1 and EP=2
alike; the EP test therefore uses HF's default initializer_range 0.02, as tests/bridge/test_distributed.py does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM

from bridge.errors import ConfigError
from bridge.models.deepseek_v2.bridge import DeepSeekV2Bridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)
from tests.bridge.test_distributed import _torchrun

TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=3,
            first_k_dense_replace=1, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=None,
            kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=4,
            num_experts_per_tok=2, n_shared_experts=2, topk_method="greedy", max_position_embeddings=128,
            initializer_range=0.2)
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 32,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}
VARIANTS = {
    # V2-Lite's shape: no query LoRA, greedy top-k, a dense first layer, two shared experts
    "lite": {},
    # V2's shape: query LoRA, group-limited choice (4 groups of 2, best 2 kept), scaled weights, YaRN, tied
    "q_lora_groups_yarn_tied": dict(q_lora_rank=32, n_routed_experts=8, topk_method="group_limited_greedy",
                                    n_group=4, topk_group=2, routed_scaling_factor=2.0, rope_parameters=YARN,
                                    num_hidden_layers=2, first_k_dense_replace=0, n_shared_experts=1,
                                    tie_word_embeddings=True),
}


def config(**overrides: Any) -> DeepseekV2Config:
    return DeepseekV2Config(**{**TINY, **overrides})


def _checkpoint(name: str, root: Path) -> tuple[Any, Path]:
    cfg = config(**VARIANTS[name])
    return cfg, make_checkpoint(root / "hf", cfg, DeepseekV2ForCausalLM)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    return _checkpoint(request.param, tmp_path_factory.mktemp(f"deepseek_v2-{request.param}"))


def test_parity_and_bit_exact_round_trip(variant: tuple[Any, Path], tmp_path: Path, fresh_parallel_state) -> None:
    cfg, path = variant
    bridge, model = build(path)
    mcore = model[0].config
    assert type(mcore).__name__ == "MLATransformerConfig"
    assert (mcore.moe_router_score_function, mcore.moe_router_pre_softmax, mcore.moe_router_enable_expert_bias) == (
        "softmax", True, False)
    assert mcore.moe_router_topk_scaling_factor == cfg.routed_scaling_factor
    layers = model[0].decoder.layers
    k = cfg.first_k_dense_replace
    assert [type(layer.mlp).__name__ for layer in layers] == ["MLP"] * k + ["MoELayer"] * (len(layers) - k)
    assert hasattr(layers[0].self_attention, "linear_q_down_proj") is (cfg.q_lora_rank is not None)
    ids = token_ids(cfg.vocab_size)
    assert max_abs_diff(model, path, ids, cfg.vocab_size) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)
    assert not any("e_score_correction_bias" in n for n in exported)


@settings(max_examples=200, deadline=None)
@given(groups=st.sampled_from([2, 4, 8]), per_group=st.integers(1, 4), topk=st.integers(1, 4),
       extra=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_group_limited_choice_keeping_k_groups_is_the_plain_top_k(groups: int, per_group: int, topk: int,
                                                                  extra: int, seed: int) -> None:
    """HF's group_limited_greedy (groups scored by their best expert) with topk_group >= k picks HF's greedy
    top-k, which is why the provider maps it to MCore's ungrouped routing."""
    experts, topk_group = groups * per_group, min(groups, topk + extra)
    assume(topk <= experts and topk_group >= topk)
    scores = torch.rand(16, experts, generator=torch.Generator().manual_seed(seed)).softmax(-1)
    group_best = scores.view(16, groups, per_group).max(-1).values
    kept = torch.zeros_like(group_best).scatter(1, group_best.topk(topk_group, dim=-1).indices, 1)
    masked = scores.masked_fill(~kept.repeat_interleave(per_group, dim=1).bool(), 0.0)
    assert torch.equal(masked.topk(topk, dim=-1).indices.sort().values, scores.topk(topk, dim=-1).indices.sort().values)


def test_router_settings() -> None:
    lite = DeepSeekV2Bridge().provider_bridge(config()).config_overrides
    assert (lite["q_lora_rank"], lite["moe_router_num_groups"], lite["moe_layer_freq"]) == (None, None, [0, 1, 1])
    grouped = DeepSeekV2Bridge().provider_bridge(config(**VARIANTS["q_lora_groups_yarn_tied"])).config_overrides
    assert (grouped["moe_router_num_groups"], grouped["moe_router_topk_scaling_factor"]) == (None, 2.0)


@pytest.mark.parametrize("overrides, match", [
    # DeepSeek-V2's own routing: 6 experts within 3 of 8 groups
    (dict(n_routed_experts=16, num_experts_per_tok=6, topk_method="group_limited_greedy", n_group=8, topk_group=3),
     "top-1 expert"),
    (dict(topk_method="noaux_tc"), "topk_method"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(first_k_dense_replace=3), "at least one MoE layer"),
])
def test_unrepresentable_configs_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DeepSeekV2Bridge().provider_bridge(config(**overrides))


@pytest.mark.slow
def test_expert_parallel_ep2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "hf", config(initializer_range=0.02), DeepseekV2ForCausalLM)
    rep = _torchrun(path, 1, 1, tmp_path / "out", ep=2)
    assert (rep["world_size"], rep["ep"]) == (2, 2)
    assert rep["max_abs_diff"] <= PARITY_ATOL, rep
    assert rep["export_bit_exact"], rep["export_mismatches"]
