"""Llama bridge: registered by HF class; its mapping table is data."""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig, LlamaForCausalLM

from bridge.mappings import AutoMapping, GatedMLPMapping, MegatronMappingRegistry, QKVMapping
from bridge.models.llama.provider import LlamaModelProvider, llama_provider_kwargs
from bridge.providers import GPTModelProvider
from bridge.registry import MegatronModelBridge

__all__ = ["LlamaBridge", "llama_mappings"]


def llama_mappings(*, tied: bool, prefix: str = "model") -> list[Any]:
    """The Llama-layout table (also used by Mistral and Qwen-like families).

    Both MCore naming schemes are listed: the local spec's separate norms and
    Transformer Engine's fused ``layer_norm_weight``; whichever the model has is used.
    """
    p = prefix
    table: list[Any] = [
        AutoMapping("embedding.word_embeddings.weight", f"{p}.embed_tokens.weight"),
        AutoMapping("decoder.final_layernorm.weight", f"{p}.norm.weight"),
        AutoMapping("decoder.layers.*.input_layernorm.weight", f"{p}.layers.*.input_layernorm.weight"),
        AutoMapping("decoder.layers.*.self_attention.linear_qkv.layer_norm_weight",
                    f"{p}.layers.*.input_layernorm.weight"),
        QKVMapping("decoder.layers.*.self_attention.linear_qkv.weight",
                   q=f"{p}.layers.*.self_attn.q_proj.weight",
                   k=f"{p}.layers.*.self_attn.k_proj.weight",
                   v=f"{p}.layers.*.self_attn.v_proj.weight"),
        AutoMapping("decoder.layers.*.self_attention.linear_proj.weight", f"{p}.layers.*.self_attn.o_proj.weight"),
        AutoMapping("decoder.layers.*.pre_mlp_layernorm.weight", f"{p}.layers.*.post_attention_layernorm.weight"),
        AutoMapping("decoder.layers.*.mlp.linear_fc1.layer_norm_weight",
                    f"{p}.layers.*.post_attention_layernorm.weight"),
        GatedMLPMapping("decoder.layers.*.mlp.linear_fc1.weight",
                        gate=f"{p}.layers.*.mlp.gate_proj.weight", up=f"{p}.layers.*.mlp.up_proj.weight"),
        AutoMapping("decoder.layers.*.mlp.linear_fc2.weight", f"{p}.layers.*.mlp.down_proj.weight"),
    ]
    # Tied: with PP > 1 the last stage holds its own output_layer copy, filled from the embedding.
    table.append(AutoMapping("output_layer.weight", f"{p}.embed_tokens.weight" if tied else "lm_head.weight",
                             export=not tied))
    return table


@MegatronModelBridge.register_bridge(source=LlamaForCausalLM, target="GPTModel")
class LlamaBridge(MegatronModelBridge):
    family = "llama"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return LlamaModelProvider(**llama_provider_kwargs(hf_config))

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return MegatronMappingRegistry(*llama_mappings(tied=provider.share_embeddings_and_output_weights))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        base = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16384)
        return [
            LlamaConfig(**base),
            LlamaConfig(**base, tie_word_embeddings=True),
            LlamaConfig(**base, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        ]
