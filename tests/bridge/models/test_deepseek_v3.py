"""DeepSeek-V3: Multi-Latent Attention, sigmoid routing with expert bias and groups, shared experts and
leading dense layers, against HF on CPU (fp32, eager).

Measured here with MCore 0.16.1: max |logit diff| about 2e-6 (budget 1e-5). Per component, on the
same inputs: MLA attention (q LoRA or not, RoPE or YaRN) and the dense MLP match HF exactly (0.0);
the router's probabilities match exactly; the MoE block differs by ~1e-5 on outputs of magnitude ~30
(relative 3e-7), from the order in which MCore sums the weighted expert outputs. Building MLA and
MoE layers on this MCore without Transformer Engine needs the CPU patches 7 and 8 of
:mod:`bridge.cpu` and the local-attention adapter of :mod:`bridge.models._mla_spec`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM

from bridge.errors import ConfigError
from bridge.inference import forward_logits
from bridge.models.deepseek_v3.bridge import ARCHITECTURE, DeepSeekV3Bridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

TINY = dict(architectures=[ARCHITECTURE], vocab_size=96, hidden_size=64, intermediate_size=128,
            moe_intermediate_size=32, num_hidden_layers=3, first_k_dense_replace=1, num_attention_heads=4,
            num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, n_group=2,
            topk_group=1, routed_scaling_factor=2.5, norm_topk_prob=True, max_position_embeddings=128,
            initializer_range=0.2)
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 32,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}
VARIANTS = {
    # q LoRA, group-limited routing, one dense layer then MoE, plain RoPE
    "q_lora_groups": {},
    # no q LoRA (linear_q_proj), YaRN, ungrouped routing, every layer MoE, 2 shared experts, tied
    "q_proj_yarn_tied": dict(q_lora_rank=None, rope_parameters=YARN, n_group=1, topk_group=1, num_hidden_layers=2,
                             first_k_dense_replace=0, n_shared_experts=2, tie_word_embeddings=True),
}


def config(**overrides: Any):
    return AutoConfig.for_model("deepseek_v3", **{**TINY, **overrides})


def _with_expert_bias(cfg: Any) -> torch.nn.Module:
    """The HF model (through AutoModel: the DeepSeek class is never imported) with a distinct,
    routing-changing ``e_score_correction_bias`` per layer (HF initialises it to zeros)."""
    model = AutoModelForCausalLM.from_config(cfg)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, buf in sorted(model.named_buffers()):
            if name.endswith("e_score_correction_bias"):
                buf.copy_(torch.randn(buf.shape, generator=gen) * 0.5)
    return model


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    cfg = config(**VARIANTS[request.param])
    path = make_checkpoint(tmp_path_factory.mktemp(f"deepseek_v3-{request.param}") / "hf", cfg, _with_expert_bias)
    return cfg, path


def test_parity_and_bit_exact_round_trip(variant: tuple[Any, Path], tmp_path: Path, fresh_parallel_state) -> None:
    cfg, path = variant
    bridge, model = build(path)
    mcore = model[0].config
    assert type(mcore).__name__ == "MLATransformerConfig"
    assert mcore.rope_type == ("yarn" if cfg.rope_parameters["rope_type"] == "yarn" else "rope")
    layers = model[0].decoder.layers
    k = cfg.first_k_dense_replace
    assert [type(layer.mlp).__name__ for layer in layers] == ["MLP"] * k + ["MoELayer"] * (len(layers) - k)
    attention = layers[0].self_attention
    assert hasattr(attention, "linear_q_down_proj") is (cfg.q_lora_rank is not None)
    ids = token_ids(cfg.vocab_size)
    assert max_abs_diff(model, path, ids, cfg.vocab_size) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)
    biases = sorted(n for n in exported if n.endswith("e_score_correction_bias"))
    assert biases == [f"model.layers.{i}.mlp.gate.e_score_correction_bias" for i in range(k, len(layers))]


def test_expert_bias_is_loaded_and_changes_routing(variant: tuple[Any, Path], fresh_parallel_state) -> None:
    """The bias is a buffer on both sides; it is loaded, and it matters (so parity would catch its loss)."""
    cfg, path = variant
    _, model = build(path)
    hf = load_file(path / "model.safetensors")
    last = cfg.num_hidden_layers - 1
    router = model[0].decoder.layers[last].mlp.router
    assert torch.equal(router.expert_bias, hf[f"model.layers.{last}.mlp.gate.e_score_correction_bias"])
    ids = token_ids(cfg.vocab_size)
    before = forward_logits(model, ids, vocab_size=cfg.vocab_size)
    for layer in model[0].decoder.layers[cfg.first_k_dense_replace:]:
        layer.mlp.router.expert_bias.zero_()
    assert not torch.allclose(before, forward_logits(model, ids, vocab_size=cfg.vocab_size), atol=1e-3)


def test_router_and_mla_settings() -> None:
    provider = DeepSeekV3Bridge().provider_bridge(config())
    o = provider.config_overrides
    assert provider.config_class == "MLATransformerConfig"
    assert (o["moe_router_score_function"], o["moe_router_enable_expert_bias"], o["moe_router_dtype"]) == (
        "sigmoid", True, "fp32")
    assert (o["moe_router_num_groups"], o["moe_router_group_topk"], o["moe_router_topk_scaling_factor"]) == (2, 1, 2.5)
    assert o["moe_layer_freq"] == [0, 1, 1]
    assert (o["q_lora_rank"], o["kv_lora_rank"], o["qk_head_dim"], o["qk_pos_emb_head_dim"], o["v_head_dim"]) == (
        32, 16, 16, 8, 16)
    assert provider.moe_shared_expert_intermediate_size == 32 and provider.kv_channels == 16
    yarn = DeepSeekV3Bridge().provider_bridge(config(rope_parameters=YARN)).config_overrides
    assert (yarn["rope_type"], yarn["rotary_scaling_factor"], yarn["original_max_position_embeddings"],
            yarn["mscale"], yarn["mscale_all_dim"]) == ("yarn", 4.0, 32, 1.0, 1.0)


@pytest.mark.parametrize("overrides, match", [
    (dict(rope_interleave=False), "rope_interleave"),
    (dict(norm_topk_prob=False), "norm_topk_prob"),
    (dict(n_routed_experts=8, n_group=4, topk_group=2), "top-2"),
    (dict(attention_bias=True), "attention_bias"),
    (dict(rope_parameters={**YARN, "mscale": 0.0}), "mscale"),
    (dict(first_k_dense_replace=3), "at least one MoE layer"),
])
def test_unrepresentable_configs_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DeepSeekV3Bridge().provider_bridge(config(**overrides))


def test_lora_norm_epsilon_difference_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    """HF's q_a/kv_a layernorms keep eps 1e-6 whatever rms_norm_eps is; MCore has one epsilon."""
    with caplog.at_level("WARNING", logger="bridge.models.mla"):
        DeepSeekV3Bridge().provider_bridge(config(rms_norm_eps=1e-6))
        assert not caplog.records
        provider = DeepSeekV3Bridge().provider_bridge(config(rms_norm_eps=1e-5))
    assert provider.layernorm_epsilon == 1e-5
    assert any("q_a_layernorm" in r.getMessage() for r in caplog.records)


def test_registered_by_string_without_importing_the_modelling_code() -> None:
    assert (DeepSeekV3Bridge.registration, DeepSeekV3Bridge.hf_class) == ("string", None)
    code = ("import sys, bridge.models, bridge.registry as r; "
            f"assert r.bridge_for_architectures([{ARCHITECTURE!r}]).family == 'deepseek_v3'; "
            "print(any('modeling_deepseek' in m for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "False", out.stderr


def test_no_query_lora_where_mla_forces_a_query_norm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      fresh_parallel_state) -> None:
    """megatron-core 0.19 demands a fused norm+linear for linear_q_proj when q_lora_rank is None and qk_layernorm
    is on (a query norm HF does not have; the local backend has none). Without the feature ``mla_plain_q_proj``
    (simulated on the installed release) the bridge turns qk_layernorm off and builds the KV norm inside
    linear_kv_up_proj (layer_norm_weight <- kv_a_layernorm): same parity, same export, no refusal."""
    from bridge import compat
    from bridge.errors import UnsupportedFeatureError

    assert compat.has_feature("mla_plain_q_proj")  # the installed release builds the spec's plain q_proj
    monkeypatch.setitem(compat.FEATURES, "mla_plain_q_proj", lambda: False)
    cfg = config(**VARIANTS["q_proj_yarn_tied"])
    path = make_checkpoint(tmp_path / "hf", cfg, _with_expert_bias)
    bridge, model = build(path)
    attention = model[0].decoder.layers[0].self_attention
    assert not model[0].config.qk_layernorm and type(attention.linear_kv_up_proj).__name__.startswith("LocalRMSNorm")
    names = {n for n, _ in model[0].named_parameters()}
    assert "decoder.layers.0.self_attention.linear_kv_up_proj.layer_norm_weight" in names
    assert not any("kv_layernorm" in n or "q_layernorm" in n for n in names)
    ids = token_ids(cfg.vocab_size)
    assert max_abs_diff(model, path, ids, cfg.vocab_size) <= PARITY_ATOL
    assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)
    provider = DeepSeekV3Bridge().provider_bridge(cfg)
    provider.transformer_layer_spec = object()  # a custom spec cannot get the fused KV norm
    with pytest.raises(UnsupportedFeatureError, match="custom transformer_layer_spec"):
        provider.finalize()
