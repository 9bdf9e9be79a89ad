"""DeepSeek-V2 bridge: registered by HF class (lazily); the shared DeepSeek table without an expert bias."""

from __future__ import annotations

from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._mla import deepseek_mappings
from bridge.models.deepseek_v2.provider import deepseek_v2_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["DeepSeekV2Bridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "DeepseekV2ForCausalLM"), target="GPTModel")
class DeepSeekV2Bridge(MegatronModelBridge):
    family = "deepseek_v2"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return deepseek_v2_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return MegatronMappingRegistry(*deepseek_mappings(
            tied=provider.share_embeddings_and_output_weights,
            q_lora=provider.config_overrides.get("q_lora_rank") is not None,
            expert_bias=False,
        ))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import DeepseekV2Config

        base = dict(vocab_size=128, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                    num_hidden_layers=3, first_k_dense_replace=1, num_attention_heads=4, num_key_value_heads=4,
                    kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=4,
                    num_experts_per_tok=2, n_shared_experts=2, max_position_embeddings=256)
        yarn = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
                "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}
        return [  # V2-Lite's shape, YaRN included (its released config has it)
            DeepseekV2Config(**base, q_lora_rank=None, topk_method="greedy", rope_parameters=yarn),
            DeepseekV2Config(**base, q_lora_rank=32, routed_scaling_factor=2.0, tie_word_embeddings=True),
        ]
