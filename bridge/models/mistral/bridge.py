"""Mistral bridge: registered by HF class; Llama's mapping table (sliding window needs no weights)."""

from __future__ import annotations

from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry
from bridge.models.mistral.provider import mistral_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["MistralBridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "MistralForCausalLM"), target="GPTModel")
class MistralBridge(MegatronModelBridge):
    family = "mistral"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return mistral_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider)

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import MistralConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder()
        return [
            MistralConfig(**base, sliding_window=8),
            MistralConfig(**base, sliding_window=None, tie_word_embeddings=True),
            MistralConfig(**base, sliding_window=16, head_dim=32),
        ]
