"""DeepSeek-V3 bridge: registered by architecture STRING (its HF modelling class is never imported).

Multi-Latent Attention in MCore's local spec and in HF:

=====================================================  ===========================================
MCore (``decoder.layers.{i}.self_attention.``)         HF (``model.layers.{i}.self_attn.``)
=====================================================  ===========================================
``linear_q_proj`` (``q_lora_rank`` None)               ``q_proj``
``linear_q_down_proj``                                 ``q_a_proj``
``q_layernorm``                                        ``q_a_layernorm``
``linear_q_up_proj``                                   ``q_b_proj``
``linear_kv_down_proj``                                ``kv_a_proj_with_mqa`` (``[c_kv; k_rope]`` rows)
``kv_layernorm``                                       ``kv_a_layernorm``
``linear_kv_up_proj``                                  ``kv_b_proj`` (per head ``[k_nope; v]`` rows)
``linear_proj``                                        ``o_proj``
=====================================================  ===========================================

Row layouts agree on both sides, so every MLA weight maps one to one. In the local spec the
down projections are ``ColumnParallelLinear`` (gathered after the matmul), so they are split
by rows across TP ranks, as :mod:`bridge.mappings.base`'s sharding table says.
The router's ``e_score_correction_bias`` is a (persistent) buffer on both sides
(``router.expert_bias`` in MCore).
"""

from __future__ import annotations

from typing import Any

from bridge.mappings import AutoMapping, MegatronMappingRegistry, ReplicatedMapping
from bridge.models._common import embedding_and_norm_mappings, gated_mlp_mappings, output_mapping
from bridge.models._moe import moe_mappings
from bridge.models.deepseek_v3.provider import DeepSeekV3ModelProvider, deepseek_v3_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import MegatronModelBridge

__all__ = ["ARCHITECTURE", "DeepSeekV3Bridge", "deepseek_v3_mappings", "mla_mappings"]

ARCHITECTURE = "DeepseekV3ForCausalLM"


def mla_mappings(*, q_lora: bool, prefix: str = "model") -> list[Any]:
    """Multi-Latent Attention rows (see the module docstring)."""
    a, h = "decoder.layers.*.self_attention", f"{prefix}.layers.*.self_attn"
    if q_lora:
        q_rows: list[Any] = [
            AutoMapping(f"{a}.linear_q_down_proj.weight", f"{h}.q_a_proj.weight"),
            AutoMapping(f"{a}.q_layernorm.weight", f"{h}.q_a_layernorm.weight"),
            # Transformer Engine fuses the norm into the up projection.
            ReplicatedMapping(f"{a}.linear_q_up_proj.layer_norm_weight", f"{h}.q_a_layernorm.weight"),
            AutoMapping(f"{a}.linear_q_up_proj.weight", f"{h}.q_b_proj.weight"),
        ]
    else:
        q_rows = [AutoMapping(f"{a}.linear_q_proj.weight", f"{h}.q_proj.weight")]
    return q_rows + [
        AutoMapping(f"{a}.linear_kv_down_proj.weight", f"{h}.kv_a_proj_with_mqa.weight"),
        AutoMapping(f"{a}.kv_layernorm.weight", f"{h}.kv_a_layernorm.weight"),
        ReplicatedMapping(f"{a}.linear_kv_up_proj.layer_norm_weight", f"{h}.kv_a_layernorm.weight"),
        AutoMapping(f"{a}.linear_kv_up_proj.weight", f"{h}.kv_b_proj.weight"),
        AutoMapping(f"{a}.linear_proj.weight", f"{h}.o_proj.weight"),
    ]


def deepseek_v3_mappings(*, tied: bool, q_lora: bool, prefix: str = "model") -> list[Any]:
    """The whole DeepSeek-V3 table: embeddings, norms, MLA, dense MLP, MoE with shared experts."""
    return [
        *embedding_and_norm_mappings(prefix=prefix),
        *mla_mappings(q_lora=q_lora, prefix=prefix),
        *gated_mlp_mappings(prefix=prefix),  # the first first_k_dense_replace layers
        *moe_mappings(prefix=prefix, shared_experts=True, expert_bias=True),
        output_mapping(tied=tied, prefix=prefix),
    ]


@MegatronModelBridge.register_bridge(source=ARCHITECTURE, target="GPTModel")
class DeepSeekV3Bridge(MegatronModelBridge):
    family = "deepseek_v3"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return DeepSeekV3ModelProvider(**deepseek_v3_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return MegatronMappingRegistry(*deepseek_v3_mappings(
            tied=provider.share_embeddings_and_output_weights,
            q_lora=provider.config_overrides.get("q_lora_rank") is not None,
        ))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import AutoConfig

        base = dict(architectures=[ARCHITECTURE], vocab_size=128, hidden_size=64, intermediate_size=128,
                    moe_intermediate_size=32, num_hidden_layers=3, first_k_dense_replace=1,
                    num_attention_heads=4, num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16,
                    qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=4,
                    num_experts_per_tok=2, n_shared_experts=1, n_group=2, topk_group=1,
                    routed_scaling_factor=2.5, norm_topk_prob=True, max_position_embeddings=256)
        yarn = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
                "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}
        return [
            AutoConfig.for_model("deepseek_v3", **base),
            AutoConfig.for_model("deepseek_v3", **{**base, "q_lora_rank": None, "n_group": 1, "topk_group": 1}),
            AutoConfig.for_model("deepseek_v3", **base, rope_parameters=yarn),
        ]
