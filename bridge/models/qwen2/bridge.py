"""Qwen2 bridge: registered by HF class; Llama's table plus the fused QKV bias."""

from __future__ import annotations

from typing import Any

from transformers import Qwen2Config

from bridge.mappings import MegatronMappingRegistry, QKVMapping
from bridge.models._common import tiny_decoder
from bridge.models.llama.bridge import llama_registry
from bridge.models.qwen2.provider import qwen2_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["Qwen2Bridge", "qkv_bias_mappings"]


def qkv_bias_mappings(*, prefix: str = "model") -> list[Any]:
    """Q, K, V biases <-> ``linear_qkv.bias``, interleaved per query group like the weight."""
    p = prefix
    return [
        QKVMapping("decoder.layers.*.self_attention.linear_qkv.bias",
                   q=f"{p}.layers.*.self_attn.q_proj.bias",
                   k=f"{p}.layers.*.self_attn.k_proj.bias",
                   v=f"{p}.layers.*.self_attn.v_proj.bias"),
    ]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Qwen2ForCausalLM"), target="GPTModel")
class Qwen2Bridge(MegatronModelBridge):
    family = "qwen2"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return qwen2_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider, *qkv_bias_mappings())

    @classmethod
    def representative_configs(cls) -> list[Any]:
        base = tiny_decoder()
        return [
            Qwen2Config(**base),
            Qwen2Config(**base, tie_word_embeddings=True, rope_theta=1000000.0),
        ]
