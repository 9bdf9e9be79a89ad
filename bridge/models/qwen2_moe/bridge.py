"""Qwen2-MoE bridge: registered by HF class; Llama's table, the QKV bias, the shared MoE rows, and the
shared expert under HF's singular name with its sigmoid gate (a ``1 x hidden`` weight on both sides)."""

from __future__ import annotations

from typing import Any

from bridge.mappings import AutoMapping, GatedMLPMapping, MegatronMappingRegistry, ReplicatedMapping
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry, qkv_bias_mappings
from bridge.models._moe import moe_mappings
from bridge.models.qwen2_moe.provider import qwen2_moe_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["Qwen2MoEBridge", "gated_shared_expert_mappings"]


def gated_shared_expert_mappings(*, prefix: str = "model") -> list[Any]:
    """``mlp.shared_expert`` and ``mlp.shared_expert_gate`` <-> MCore's ``shared_experts`` (gate included)."""
    m, h = "decoder.layers.*.mlp.shared_experts", f"{prefix}.layers.*.mlp"
    return [
        GatedMLPMapping(f"{m}.linear_fc1.weight", gate=f"{h}.shared_expert.gate_proj.weight",
                        up=f"{h}.shared_expert.up_proj.weight"),
        AutoMapping(f"{m}.linear_fc2.weight", f"{h}.shared_expert.down_proj.weight"),
        ReplicatedMapping(f"{m}.gate_weight", f"{h}.shared_expert_gate.weight"),
    ]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Qwen2MoeForCausalLM"), target="GPTModel")
class Qwen2MoEBridge(MegatronModelBridge):
    family = "qwen2_moe"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return qwen2_moe_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider, *qkv_bias_mappings(), *moe_mappings(), *gated_shared_expert_mappings())

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import Qwen2MoeConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder(moe_intermediate_size=32, shared_expert_intermediate_size=48, num_experts=4,
                            num_experts_per_tok=2, max_position_embeddings=256)
        return [
            Qwen2MoeConfig(**base, norm_topk_prob=False),
            Qwen2MoeConfig(**{**base, "num_hidden_layers": 3}, norm_topk_prob=True, mlp_only_layers=[1],
                           tie_word_embeddings=True),
        ]
