"""DeepSeek-V3 bridge: registered by architecture STRING (its HF modelling class is never imported).

Its table is the shared DeepSeek table (:func:`bridge.models._mla.deepseek_mappings`: MLA, dense first
layers, routed and shared experts) with the router's ``e_score_correction_bias``, a (persistent) buffer
on both sides (``router.expert_bias`` in MCore).
"""

from __future__ import annotations

from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._mla import deepseek_mappings
from bridge.models.deepseek_v3.provider import deepseek_v3_provider
from bridge.providers import GPTModelProvider
from bridge.registry import MegatronModelBridge

__all__ = ["ARCHITECTURE", "DeepSeekV3Bridge", "deepseek_v3_mappings"]

ARCHITECTURE = "DeepseekV3ForCausalLM"


def deepseek_v3_mappings(*, tied: bool, q_lora: bool, prefix: str = "model") -> list[Any]:
    """The whole DeepSeek-V3 table: embeddings, norms, MLA, dense MLP, MoE with shared experts and expert bias."""
    return deepseek_mappings(tied=tied, q_lora=q_lora, expert_bias=True, prefix=prefix)


@MegatronModelBridge.register_bridge(source=ARCHITECTURE, target="GPTModel")
class DeepSeekV3Bridge(MegatronModelBridge):
    family = "deepseek_v3"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return deepseek_v3_provider(hf_config)

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
