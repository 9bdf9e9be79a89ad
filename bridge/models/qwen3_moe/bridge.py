"""Qwen3-MoE bridge: registered by HF class; the Llama table with QK norms and the shared MoE rows
(:mod:`bridge.models._moe` describes the expert layout)."""

from __future__ import annotations

from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry, qk_norm_mappings
from bridge.models._moe import moe_mappings
from bridge.models.qwen3_moe.provider import Qwen3MoEModelProvider, qwen3_moe_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["Qwen3MoEBridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Qwen3MoeForCausalLM"), target="GPTModel")
class Qwen3MoEBridge(MegatronModelBridge):
    family = "qwen3_moe"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return Qwen3MoEModelProvider(**qwen3_moe_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        # The dense rows of the Llama table serve the layers of mlp_only_layers / decoder_sparse_step.
        return llama_registry(provider, *qk_norm_mappings(), *moe_mappings())

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import Qwen3MoeConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder(moe_intermediate_size=32, head_dim=16, num_experts=4, num_experts_per_tok=2,
                            max_position_embeddings=256)
        return [
            Qwen3MoeConfig(**base, norm_topk_prob=True),
            Qwen3MoeConfig(**base, norm_topk_prob=False, tie_word_embeddings=True),
            Qwen3MoeConfig(**{**base, "num_hidden_layers": 3}, norm_topk_prob=True, mlp_only_layers=[0],
                           use_sliding_window=True, sliding_window=64),
        ]
