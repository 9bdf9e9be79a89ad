"""OLMoE bridge: registered by HF class; Llama's table, the shared MoE rows and the QK norms.

HF's ``q_norm``/``k_norm`` are ``num_heads * head_dim`` (``num_kv_heads * head_dim``) wide; MCore's
``q_layernorm``/``k_layernorm`` hold the same vectors in OLMoE's layer spec, so the rows are direct copies.
"""

from __future__ import annotations

from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry, qk_norm_mappings
from bridge.models._moe import moe_mappings
from bridge.models.olmoe.provider import olmoe_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["OLMoEBridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "OlmoeForCausalLM"), target="GPTModel")
class OLMoEBridge(MegatronModelBridge):
    family = "olmoe"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return olmoe_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider, *qk_norm_mappings(), *moe_mappings())

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import OlmoeConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder(intermediate_size=32, num_experts=4, num_experts_per_tok=2, max_position_embeddings=256,
                            pad_token_id=1, eos_token_id=2)
        return [
            OlmoeConfig(**base, norm_topk_prob=False),
            OlmoeConfig(**base, norm_topk_prob=True, tie_word_embeddings=True),
        ]
