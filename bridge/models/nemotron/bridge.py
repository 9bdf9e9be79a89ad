"""Nemotron bridge: the Llama table with a plain ``up_proj`` as ``linear_fc1`` and the LayerNorm biases."""

from __future__ import annotations

from typing import Any

from bridge.mappings import AutoMapping, MegatronMappingRegistry
from bridge.models._common import layernorm_bias_mappings, replace_rows, tiny_decoder
from bridge.models._llama_like import llama_mappings
from bridge.models.nemotron.provider import NemotronModelProvider, nemotron_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["NemotronBridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "NemotronForCausalLM"), target="GPTModel")
class NemotronBridge(MegatronModelBridge):
    family = "nemotron"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return NemotronModelProvider(**nemotron_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        fc1 = AutoMapping("decoder.layers.*.mlp.linear_fc1.weight", "model.layers.*.mlp.up_proj.weight")
        table = replace_rows(llama_mappings(tied=provider.share_embeddings_and_output_weights), fc1)
        return MegatronMappingRegistry(*table, *layernorm_bias_mappings())

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import NemotronConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder()
        return [NemotronConfig(**base), NemotronConfig(**base, head_dim=32, tie_word_embeddings=True)]
