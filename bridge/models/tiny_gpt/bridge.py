"""TinyGPT bridge: registered by architecture *string*, so its checkpoint code is never imported here.

The fused tensors are mapped without splitting them on the HF side: ``attn.qkv`` holds
``[all q; all k; all v]`` (:class:`ConcatenatedQKVMapping` regroups it per query group), and
``mlp.w12`` is ``cat(gate, up)``, which is already MCore's full ``linear_fc1`` layout, so it is a
direct copy whose TP split is the ``gated`` kind (rank ``r`` holds ``[gate_r; up_r]``).
"""

from __future__ import annotations

from typing import Any

from bridge.mappings import AutoMapping, ConcatenatedQKVMapping, MegatronMappingRegistry
from bridge.models.tiny_gpt.provider import TinyGPTModelProvider, tiny_gpt_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import MegatronModelBridge

__all__ = ["TinyGPTBridge", "tiny_gpt_mappings"]


def tiny_gpt_mappings(*, tied: bool) -> list[Any]:
    """The TinyGPT table (both MCore norm namings, as for Llama)."""
    layer = "decoder.layers.*"
    return [
        AutoMapping("embedding.word_embeddings.weight", "wte.weight"),
        AutoMapping("decoder.final_layernorm.weight", "norm_f.weight"),
        AutoMapping(f"{layer}.input_layernorm.weight", "blocks.*.norm1.weight"),
        AutoMapping(f"{layer}.self_attention.linear_qkv.layer_norm_weight", "blocks.*.norm1.weight"),
        ConcatenatedQKVMapping(f"{layer}.self_attention.linear_qkv.weight", "blocks.*.attn.qkv.weight"),
        AutoMapping(f"{layer}.self_attention.linear_proj.weight", "blocks.*.attn.out.weight"),
        AutoMapping(f"{layer}.pre_mlp_layernorm.weight", "blocks.*.norm2.weight"),
        AutoMapping(f"{layer}.mlp.linear_fc1.layer_norm_weight", "blocks.*.norm2.weight"),
        AutoMapping(f"{layer}.mlp.linear_fc1.weight", "blocks.*.mlp.w12.weight", sharding="gated"),
        AutoMapping(f"{layer}.mlp.linear_fc2.weight", "blocks.*.mlp.w3.weight"),
        AutoMapping("output_layer.weight", "wte.weight" if tied else "lm_head.weight", export=not tied),
    ]


@MegatronModelBridge.register_bridge(source="TinyGPTForCausalLM", target="GPTModel")
class TinyGPTBridge(MegatronModelBridge):
    family = "tiny_gpt"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return TinyGPTModelProvider(**tiny_gpt_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return MegatronMappingRegistry(*tiny_gpt_mappings(tied=provider.share_embeddings_and_output_weights))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import PretrainedConfig

        base = dict(architectures=["TinyGPTForCausalLM"], model_type="tiny_gpt", vocab_size=128, hidden_size=64,
                    num_layers=2, num_heads=4, num_kv_heads=2, ffn_hidden_size=96, rms_norm_eps=1e-5,
                    rope_theta=10000.0, max_position_embeddings=64)
        return [
            PretrainedConfig(**base, tie_word_embeddings=False),
            PretrainedConfig(**base, tie_word_embeddings=True),
        ]
