"""Gemma 2 bridge: Gemma's (Llama's) table; HF's ``pre_feedforward_layernorm`` is MCore's
``pre_mlp_layernorm``, and the two post-norms sit inside ``linear_proj`` and ``linear_fc2``."""

from __future__ import annotations

import dataclasses
from typing import Any

from transformers import Gemma2Config

from bridge.mappings import AutoMapping, MegatronMappingRegistry
from bridge.models._common import replace_rows, tiny_decoder
from bridge.models._gemma_like import POST_NORM_LAYER_MODULES
from bridge.models._llama_like import llama_mappings
from bridge.models.gemma2.provider import Gemma2ModelProvider, gemma2_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge
from bridge.requirements import Requirements

__all__ = ["Gemma2Bridge", "post_norm_mappings"]


def post_norm_mappings(*, tied: bool, prefix: str = "model") -> list[Any]:
    """The Llama table with Gemma 2's four layer norms (also Gemma 3's)."""
    m, h = "decoder.layers.*", f"{prefix}.layers.*"
    pre_ffn = f"{h}.pre_feedforward_layernorm.weight"
    return [
        *replace_rows(llama_mappings(tied=tied, prefix=prefix),
                      AutoMapping(f"{m}.pre_mlp_layernorm.weight", pre_ffn),
                      AutoMapping(f"{m}.mlp.linear_fc1.layer_norm_weight", pre_ffn)),
        AutoMapping(f"{m}.self_attention.linear_proj.post_layernorm.weight", f"{h}.post_attention_layernorm.weight"),
        AutoMapping(f"{m}.mlp.linear_fc2.post_layernorm.weight", f"{h}.post_feedforward_layernorm.weight"),
    ]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Gemma2ForCausalLM"), target="GPTModel")
class Gemma2Bridge(MegatronModelBridge):
    family = "gemma2"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return Gemma2ModelProvider(**gemma2_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return MegatronMappingRegistry(*post_norm_mappings(tied=provider.share_embeddings_and_output_weights))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        base = tiny_decoder(head_dim=16, query_pre_attn_scalar=16, sliding_window=8, pad_token_id=0)
        return [Gemma2Config(**base), Gemma2Config(**base, tie_word_embeddings=False, attn_logit_softcapping=None)]

    @classmethod
    def requirements(cls) -> list[Requirements]:
        """The derived requirements, plus the MCore modules the custom layer is built from."""
        return [dataclasses.replace(req, modules=req.modules | POST_NORM_LAYER_MODULES) for req in super().requirements()]
