"""Llama bridge: registered by HF class; its mapping table is data."""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig

from bridge.mappings import AutoMapping, MegatronMappingRegistry, QKVMapping
from bridge.models._common import (
    embedding_and_norm_mappings,
    gated_mlp_mappings,
    output_mapping,
    te_fused_norm_mappings,
    tiny_decoder,
)
from bridge.models.llama.provider import LlamaModelProvider, llama_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["LlamaBridge", "llama_mappings", "llama_registry"]


def llama_mappings(*, tied: bool, prefix: str = "model") -> list[Any]:
    """The Llama-layout table (also used by Mistral and Qwen-like families).

    Both MCore naming schemes are listed: the local spec's separate norms and
    Transformer Engine's fused ``layer_norm_weight``; whichever the model has is used.
    """
    a, h = "decoder.layers.*.self_attention", f"{prefix}.layers.*.self_attn"
    return [
        *embedding_and_norm_mappings(prefix=prefix),
        *te_fused_norm_mappings(prefix=prefix),
        QKVMapping(f"{a}.linear_qkv.weight", q=f"{h}.q_proj.weight", k=f"{h}.k_proj.weight", v=f"{h}.v_proj.weight"),
        AutoMapping(f"{a}.linear_proj.weight", f"{h}.o_proj.weight"),
        *gated_mlp_mappings(prefix=prefix),
        output_mapping(tied=tied, prefix=prefix),
    ]


def llama_registry(provider: GPTModelProvider, *extra: Any) -> MegatronMappingRegistry:
    """The Llama table for ``provider`` (tied or not), followed by a family's ``extra`` rows."""
    return MegatronMappingRegistry(*llama_mappings(tied=provider.share_embeddings_and_output_weights), *extra)


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "LlamaForCausalLM"), target="GPTModel")
class LlamaBridge(MegatronModelBridge):
    family = "llama"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return LlamaModelProvider(**llama_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider)

    @classmethod
    def representative_configs(cls) -> list[Any]:
        base = tiny_decoder(max_position_embeddings=16384)
        return [
            LlamaConfig(**base),
            LlamaConfig(**base, tie_word_embeddings=True),
            LlamaConfig(**base, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        ]
