"""Gemma 2 bridge: the shared post-norm table (:func:`bridge.models._gemma_like.post_norm_mappings`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._gemma_like import POST_NORM_LAYER_MODULES, post_norm_mappings
from bridge.models.gemma2.provider import Gemma2ModelProvider, gemma2_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge
from bridge.requirements import Requirements

__all__ = ["Gemma2Bridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Gemma2ForCausalLM"), target="GPTModel")
class Gemma2Bridge(MegatronModelBridge):
    family = "gemma2"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return Gemma2ModelProvider(**gemma2_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return MegatronMappingRegistry(*post_norm_mappings(tied=provider.share_embeddings_and_output_weights))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import Gemma2Config  # only here: importing it costs seconds at start-up

        base = tiny_decoder(head_dim=16, query_pre_attn_scalar=16, sliding_window=8, pad_token_id=0)
        return [Gemma2Config(**base), Gemma2Config(**base, tie_word_embeddings=False, attn_logit_softcapping=None)]

    @classmethod
    def requirements(cls, model_class: str = "gpt") -> list[Requirements]:
        """The derived requirements, plus the MCore modules the custom layer is built from."""
        return [dataclasses.replace(req, modules=req.modules | POST_NORM_LAYER_MODULES)
                for req in super().requirements(model_class)]
