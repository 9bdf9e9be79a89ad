"""Qwen3-MoE bridge: registered by HF class; its mapping table is data.

HF checkpoints store experts one by one (``mlp.experts.{e}.gate_proj`` ...; transformers 5
fuses them into 3-D tensors in memory but writes this layout back on save). MCore's local
spec holds them as ``SequentialMLP`` experts ``mlp.experts.local_experts.{e}``: in every
expert pattern below the first ``*`` is the layer and the second the (global) expert.
"""

from __future__ import annotations

from typing import Any

from transformers import Qwen3MoeConfig

from bridge.mappings import AutoMapping, GatedMLPMapping, MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models.llama.bridge import llama_registry
from bridge.models.qwen3.bridge import qk_norm_mappings
from bridge.models.qwen3_moe.provider import Qwen3MoEModelProvider, qwen3_moe_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["Qwen3MoEBridge", "moe_mappings"]


def moe_mappings(*, prefix: str = "model", shared_experts: bool = False,
                 expert_bias: bool = False) -> list[Any]:
    """Router and per-expert weights (and optionally shared experts and the router's expert bias)."""
    p, m = prefix, "decoder.layers.*.mlp"
    table: list[Any] = [
        AutoMapping(f"{m}.router.weight", f"{p}.layers.*.mlp.gate.weight"),
        GatedMLPMapping(f"{m}.experts.local_experts.*.linear_fc1.weight",
                        gate=f"{p}.layers.*.mlp.experts.*.gate_proj.weight",
                        up=f"{p}.layers.*.mlp.experts.*.up_proj.weight"),
        AutoMapping(f"{m}.experts.local_experts.*.linear_fc2.weight", f"{p}.layers.*.mlp.experts.*.down_proj.weight"),
    ]
    if expert_bias:
        table.append(AutoMapping(f"{m}.router.expert_bias", f"{p}.layers.*.mlp.gate.e_score_correction_bias"))
    if shared_experts:
        table += [
            GatedMLPMapping(f"{m}.shared_experts.linear_fc1.weight",
                            gate=f"{p}.layers.*.mlp.shared_experts.gate_proj.weight",
                            up=f"{p}.layers.*.mlp.shared_experts.up_proj.weight"),
            AutoMapping(f"{m}.shared_experts.linear_fc2.weight", f"{p}.layers.*.mlp.shared_experts.down_proj.weight"),
        ]
    return table


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
        base = tiny_decoder(moe_intermediate_size=32, head_dim=16, num_experts=4, num_experts_per_tok=2,
                            max_position_embeddings=256)
        return [
            Qwen3MoeConfig(**base, norm_topk_prob=True),
            Qwen3MoeConfig(**base, norm_topk_prob=False, tie_word_embeddings=True),
            Qwen3MoeConfig(**{**base, "num_hidden_layers": 3}, norm_topk_prob=True, mlp_only_layers=[0],
                           use_sliding_window=True, sliding_window=64),
        ]
