"""Gemma (v1) bridge: registered by HF class; Llama's parameter names, weights copied unchanged.

The norm weights stay zero-centred on both sides (MCore ``layernorm_zero_centered_gamma``), so
import and export are plain copies and the round trip is bit-exact; see ``provider.py`` for how the
model computes ``1 + weight`` and the embedding scale.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._llama_like import llama_registry
from bridge.models.gemma.provider import GemmaModelProvider, gemma_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge
from bridge.requirements import Requirements

__all__ = ["GemmaBridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "GemmaForCausalLM"), target="GPTModel")
class GemmaBridge(MegatronModelBridge):
    family = "gemma"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return GemmaModelProvider(**gemma_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider)

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import GemmaConfig  # only here: importing it costs seconds at start-up

        base = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=8192)
        return [
            GemmaConfig(**base, num_key_value_heads=1, head_dim=32),  # Gemma-2B: MQA, head_dim != hidden/heads
            GemmaConfig(**base, num_key_value_heads=4, head_dim=16),  # Gemma-7B: MHA
        ]

    @classmethod
    def requirements(cls, model_class: str = "gpt") -> list[Requirements]:
        """The derived requirements, plus the block-spec API the local zero-centred norms are built with."""
        return [
            dataclasses.replace(req, modules=req.modules | {"megatron.core.transformer.transformer_block"})
            for req in super().requirements(model_class)
        ]
