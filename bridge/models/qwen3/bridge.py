"""Qwen3 bridge: registered by HF class; Llama's table plus the QK norms."""

from __future__ import annotations

from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry, qk_norm_mappings
from bridge.models.qwen3.provider import qwen3_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["Qwen3Bridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Qwen3ForCausalLM"), target="GPTModel")
class Qwen3Bridge(MegatronModelBridge):
    family = "qwen3"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return qwen3_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider, *qk_norm_mappings())

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import Qwen3Config  # only here: importing it costs seconds at start-up

        base = tiny_decoder()
        return [
            Qwen3Config(**base, head_dim=32),  # head_dim != hidden_size / num_attention_heads, as in Qwen3
            Qwen3Config(**base, head_dim=16, tie_word_embeddings=True),
        ]
