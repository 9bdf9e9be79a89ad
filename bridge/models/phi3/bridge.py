"""Phi-3 bridge: the Llama table with HF's fused ``qkv_proj`` (``[all q; all k; all v]``) and
``gate_up_proj`` (``cat(gate, up)``, already MCore's ``linear_fc1`` layout) in place of the split rows."""

from __future__ import annotations

from typing import Any

from bridge.mappings import AutoMapping, ConcatenatedQKVMapping, MegatronMappingRegistry
from bridge.models._common import replace_rows, tiny_decoder
from bridge.models._llama_like import llama_mappings
from bridge.models.phi3.provider import phi3_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["Phi3Bridge"]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "Phi3ForCausalLM"), target="GPTModel")
class Phi3Bridge(MegatronModelBridge):
    family = "phi3"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return phi3_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        m, h = "decoder.layers.*", "model.layers.*"
        return MegatronMappingRegistry(*replace_rows(
            llama_mappings(tied=provider.share_embeddings_and_output_weights),
            ConcatenatedQKVMapping(f"{m}.self_attention.linear_qkv.weight", f"{h}.self_attn.qkv_proj.weight"),
            AutoMapping(f"{m}.mlp.linear_fc1.weight", f"{h}.mlp.gate_up_proj.weight", sharding="gated"),
        ))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import Phi3Config  # only here: importing it costs seconds at start-up

        base = tiny_decoder(pad_token_id=0, eos_token_id=1)  # HF's defaults (32000) lie outside the tiny vocab
        return [
            Phi3Config(**base, sliding_window=8),  # Phi-3-mini: every layer windowed
            Phi3Config(**base, tie_word_embeddings=True,  # Phi-4-mini: tied, partial rotary
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.75}),
        ]
