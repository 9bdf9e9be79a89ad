"""Gemma 3 (text) bridge: Gemma 2's post-norm table plus the QK norms."""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._gemma_like import POST_NORM_LAYER_MODULES, post_norm_mappings
from bridge.models._llama_like import qk_norm_mappings
from bridge.models.gemma3.provider import gemma3_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge
from bridge.requirements import Requirements

__all__ = ["Gemma3Bridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Gemma3ForCausalLM"), target="GPTModel")
class Gemma3Bridge(MegatronModelBridge):
    family = "gemma3"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return gemma3_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        tied = provider.share_embeddings_and_output_weights
        return MegatronMappingRegistry(*post_norm_mappings(tied=tied), *qk_norm_mappings())

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import Gemma3TextConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder(head_dim=16, query_pre_attn_scalar=16, sliding_window=8, pad_token_id=0,
                            num_hidden_layers=3, layer_types=["sliding_attention", "sliding_attention", "full_attention"])
        linear = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
                  "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}}
        return [Gemma3TextConfig(**base), Gemma3TextConfig(**base, tie_word_embeddings=False, rope_parameters=linear)]

    @classmethod
    def requirements(cls, model_class: str = "gpt") -> list[Requirements]:
        """The derived requirements, plus the MCore modules the custom layer is built from."""
        return [dataclasses.replace(req, modules=req.modules | POST_NORM_LAYER_MODULES)
                for req in super().requirements(model_class)]
