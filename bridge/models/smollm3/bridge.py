"""SmolLM3 bridge: registered by HF class; Llama's table (NoPE layers have no weights of their own)."""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry
from bridge.models.smollm3.provider import smollm3_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge
from bridge.requirements import Requirements

__all__ = ["SmolLM3Bridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "SmolLM3ForCausalLM"), target="GPTModel")
class SmolLM3Bridge(MegatronModelBridge):
    family = "smollm3"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return smollm3_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider)

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import SmolLM3Config  # only here: importing it costs seconds at start-up

        base = tiny_decoder(num_hidden_layers=4, no_rope_layer_interval=2, pad_token_id=0, bos_token_id=1,
                            eos_token_id=2)
        return [SmolLM3Config(**base, tie_word_embeddings=False), SmolLM3Config(**base)]  # SmolLM3-3B is tied

    @classmethod
    def requirements(cls, model_class: str = "gpt") -> list[Requirements]:
        """The derived requirements, plus the MCore modules the per-layer RoPE attention is built from."""
        extra = {"megatron.core.transformer.attention", "megatron.core.models.common.embeddings.rotary_pos_embedding"}
        return [dataclasses.replace(req, modules=req.modules | extra) for req in super().requirements(model_class)]
