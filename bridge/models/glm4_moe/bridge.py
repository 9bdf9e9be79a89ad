"""GLM-4-MoE bridge: registered by HF class; Llama's table, the QKV bias and QK norms where the config has
them, and the shared MoE rows with shared experts and the routing bias (DeepSeek-V3's names)."""

from __future__ import annotations

from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry, qk_norm_mappings, qkv_bias_mappings
from bridge.models._moe import moe_mappings
from bridge.models.glm4_moe.provider import glm4_moe_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["Glm4MoEBridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Glm4MoeForCausalLM"), target="GPTModel")
class Glm4MoEBridge(MegatronModelBridge):
    family = "glm4_moe"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return glm4_moe_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider, *(qkv_bias_mappings() if provider.add_qkv_bias else []),
                              *(qk_norm_mappings() if provider.qk_layernorm else []),
                              *moe_mappings(shared_experts=True, expert_bias=True))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import Glm4MoeConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder(num_hidden_layers=3, moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2,
                            n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1,
                            routed_scaling_factor=2.5, head_dim=32, max_position_embeddings=256,
                            rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                             "partial_rotary_factor": 0.5})
        return [
            Glm4MoeConfig(**base, attention_bias=True, use_qk_norm=False),  # GLM-4.5's layout
            Glm4MoeConfig(**base, attention_bias=False, use_qk_norm=True, tie_word_embeddings=True),
        ]
