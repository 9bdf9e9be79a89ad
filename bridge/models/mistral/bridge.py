"""Mistral bridge: registered by HF class; Llama's mapping table (sliding window needs no weights)."""

from __future__ import annotations

from typing import Any

from transformers import MistralConfig, MistralForCausalLM

from bridge.mappings import MegatronMappingRegistry
from bridge.models.llama.bridge import llama_mappings
from bridge.models.mistral.provider import mistral_provider
from bridge.providers import GPTModelProvider
from bridge.registry import MegatronModelBridge

__all__ = ["MistralBridge"]


@MegatronModelBridge.register_bridge(source=MistralForCausalLM, target="GPTModel")
class MistralBridge(MegatronModelBridge):
    family = "mistral"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return mistral_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return MegatronMappingRegistry(*llama_mappings(tied=provider.share_embeddings_and_output_weights))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        base = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
        return [
            MistralConfig(**base, sliding_window=8),
            MistralConfig(**base, sliding_window=None, tie_word_embeddings=True),
            MistralConfig(**base, sliding_window=16, head_dim=32),
        ]
