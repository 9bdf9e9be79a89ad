"""Ernie-4.5-MoE bridge: registered by HF class; Llama's table, the shared MoE rows with shared experts, and
the router's expert bias, which HF stores as ``moe_statics.e_score_correction_bias`` of shape ``[1, experts]``
(MCore's router holds ``expert_bias`` as ``[experts]``)."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from bridge.mappings import MegatronMappingRegistry, MegatronParamMapping
from bridge.mappings.base import MappingContext
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry
from bridge.models._moe import moe_mappings
from bridge.models.ernie4_5_moe.provider import ernie4_5_moe_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["Ernie45MoEBridge", "RowVectorMapping", "as_row", "from_row"]


def from_row(t: torch.Tensor) -> torch.Tensor:
    """HF's ``[1, n]`` -> MCore's ``[n]`` (inverse: :func:`as_row`)."""
    if t.dim() != 2 or t.shape[0] != 1:
        raise ValueError(f"expected a [1, n] tensor, found shape {tuple(t.shape)}")
    return t.reshape(-1)


def as_row(t: torch.Tensor) -> torch.Tensor:
    """MCore's ``[n]`` -> HF's ``[1, n]`` (inverse: :func:`from_row`)."""
    return t.reshape(1, -1)


class RowVectorMapping(MegatronParamMapping):
    """A replicated vector that HF stores as a ``[1, n]`` row."""

    kind = "row_vector"

    def __init__(self, megatron_param: str, hf_param: str, *, export: bool = True):
        super().__init__(megatron_param, hf_param, sharding="replicated", export=export)

    def hf_to_megatron(self, hf: Mapping[str, torch.Tensor], ctx: MappingContext) -> torch.Tensor:
        return from_row(hf[self.hf_param])

    def megatron_to_hf(self, tensor: torch.Tensor, ctx: MappingContext) -> dict[str, torch.Tensor]:
        return {self.hf_param: as_row(tensor)}


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Ernie4_5_MoeForCausalLM"), target="GPTModel")
class Ernie45MoEBridge(MegatronModelBridge):
    family = "ernie4_5_moe"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return ernie4_5_moe_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider, *moe_mappings(shared_experts=bool(provider.moe_shared_expert_intermediate_size)),
                              RowVectorMapping("decoder.layers.*.mlp.router.expert_bias",
                                               "model.layers.*.mlp.moe_statics.e_score_correction_bias"))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import Ernie4_5_MoeConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder(num_hidden_layers=3, moe_intermediate_size=32, moe_num_experts=4, moe_k=2,
                            moe_layer_start_index=1, max_position_embeddings=256)
        return [
            Ernie4_5_MoeConfig(**base, moe_num_shared_experts=1, tie_word_embeddings=True),
            Ernie4_5_MoeConfig(**base, moe_num_shared_experts=0, tie_word_embeddings=False),
        ]
