"""Granite bridge: registered by HF class; Llama's table (the multipliers have no weights)."""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry
from bridge.models.granite.provider import GraniteModelProvider, granite_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge
from bridge.requirements import Requirements

__all__ = ["GraniteBridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "GraniteForCausalLM"), target="GPTModel")
class GraniteBridge(MegatronModelBridge):
    family = "granite"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return GraniteModelProvider(**granite_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider)

    @classmethod
    def representative_configs(cls) -> list[Any]:
        # Granite-3 style multipliers (attention 2**-3 here: a power of two, as Granite's 2**-7, rounds like HF).
        from transformers import GraniteConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder(embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.125,
                            logits_scaling=8.0)
        return [GraniteConfig(**base), GraniteConfig(**base, tie_word_embeddings=True)]

    @classmethod
    def requirements(cls, model_class: str = "gpt") -> list[Requirements]:
        """The derived requirements, plus the MCore module the scaled residual branch is built from."""
        return [dataclasses.replace(req, modules=req.modules | {"megatron.core.tensor_parallel"})
                for req in super().requirements(model_class)]
