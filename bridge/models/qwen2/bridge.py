"""Qwen2 bridge: registered by HF class; Llama's table plus the fused QKV bias."""

from __future__ import annotations

from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry, qkv_bias_mappings
from bridge.models.qwen2.provider import qwen2_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["Qwen2Bridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Qwen2ForCausalLM"), target="GPTModel")
class Qwen2Bridge(MegatronModelBridge):
    family = "qwen2"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return qwen2_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider, *qkv_bias_mappings())

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import Qwen2Config  # only here: importing it costs seconds at start-up

        base = tiny_decoder()
        return [
            Qwen2Config(**base),
            Qwen2Config(**base, tie_word_embeddings=True, rope_theta=1000000.0),
        ]
