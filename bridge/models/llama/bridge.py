"""Llama bridge: registered by HF class; its table is the shared Llama one (:mod:`bridge.models._llama_like`)."""

from __future__ import annotations

from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry
from bridge.models.llama.provider import LlamaModelProvider, llama_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["LlamaBridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "LlamaForCausalLM"), target="GPTModel")
class LlamaBridge(MegatronModelBridge):
    family = "llama"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return LlamaModelProvider(**llama_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider)

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import LlamaConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder(max_position_embeddings=16384)
        return [
            LlamaConfig(**base),
            LlamaConfig(**base, tie_word_embeddings=True),
            LlamaConfig(**base, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        ]
