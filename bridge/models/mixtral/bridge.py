"""Mixtral bridge: registered by HF class; Llama's attention rows plus Mixtral's expert names.

HF keeps the experts under ``block_sparse_moe`` with Mixtral's own names: ``w1`` is the gate
projection, ``w3`` the up projection and ``w2`` the down projection (the first ``*`` is the layer,
the second the expert).
"""

from __future__ import annotations

from typing import Any

from bridge.mappings import AutoMapping, GatedMLPMapping, MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry
from bridge.models.mixtral.provider import mixtral_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["MixtralBridge", "mixtral_expert_mappings"]


def mixtral_expert_mappings(*, prefix: str = "model") -> list[Any]:
    """Router and experts under HF's ``block_sparse_moe`` names."""
    m, h = "decoder.layers.*.mlp", f"{prefix}.layers.*.block_sparse_moe"
    return [
        AutoMapping(f"{m}.router.weight", f"{h}.gate.weight"),
        GatedMLPMapping(f"{m}.experts.local_experts.*.linear_fc1.weight",
                        gate=f"{h}.experts.*.w1.weight", up=f"{h}.experts.*.w3.weight"),
        AutoMapping(f"{m}.experts.local_experts.*.linear_fc2.weight", f"{h}.experts.*.w2.weight"),
    ]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "MixtralForCausalLM"), target="GPTModel")
class MixtralBridge(MegatronModelBridge):
    family = "mixtral"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return mixtral_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider, *mixtral_expert_mappings())

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import MixtralConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder(intermediate_size=32, num_local_experts=4, num_experts_per_tok=2)
        return [
            MixtralConfig(**base),
            MixtralConfig(**base, tie_word_embeddings=True, sliding_window=16, head_dim=32),
        ]
