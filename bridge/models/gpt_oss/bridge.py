"""GPT-OSS bridge: registered by HF class; the Llama table with every attention bias, the sinks, the biased
router, and experts stored stacked (one HF tensor per layer and kind: ``_moe.stacked_expert_mappings``).

HF's experts per layer: ``gate_up_proj [E, hidden, 2 * ffn]`` (gate and up columns alternating, applied as
``x @ W``), ``gate_up_proj_bias [E, 2 * ffn]`` (alternating too), ``down_proj [E, ffn, hidden]``,
``down_proj_bias [E, hidden]``; MCore's expert ``e`` holds ``linear_fc1 [2 * ffn, hidden]`` = ``[gate; up]``
and ``linear_fc2 [hidden, ffn]``.
"""

from __future__ import annotations

from typing import Any

from bridge.mappings import AutoMapping, ColumnParallelMapping, MegatronMappingRegistry
from bridge.models._common import tiny_decoder
from bridge.models._llama_like import llama_registry, qkv_bias_mappings
from bridge.models._moe import stacked_expert_mappings
from bridge.models.gpt_oss.provider import gpt_oss_provider
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge

__all__ = ["GptOssBridge", "gpt_oss_mappings"]


def gpt_oss_mappings(*, experts: int, prefix: str = "model") -> list[Any]:
    """Attention biases and sinks, the biased router, and the stacked experts (``experts`` per layer)."""
    a, m, h = "decoder.layers.*.self_attention", "decoder.layers.*.mlp", f"{prefix}.layers.*"
    return [
        *qkv_bias_mappings(prefix=prefix),
        AutoMapping(f"{a}.linear_proj.bias", f"{h}.self_attn.o_proj.bias"),
        ColumnParallelMapping(f"{a}.core_attention.softmax_offset", f"{h}.self_attn.sinks"),  # one per head
        AutoMapping(f"{m}.router.weight", f"{h}.mlp.router.weight"),
        AutoMapping(f"{m}.router.bias", f"{h}.mlp.router.bias"),
        *stacked_expert_mappings(experts=experts, prefix=prefix, interleaved=True, biases=True),
    ]


@MegatronModelBridge.register_bridge(source=HFClass("transformers", "GptOssForCausalLM"), target="GPTModel")
class GptOssBridge(MegatronModelBridge):
    family = "gpt_oss"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return gpt_oss_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return llama_registry(provider, *gpt_oss_mappings(experts=provider.num_moe_experts))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        from transformers import GptOssConfig  # only here: importing it costs seconds at start-up

        base = tiny_decoder(intermediate_size=32, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
                            sliding_window=8)
        return [
            # HF's defaults: YaRN (x32 of 4096, truncate=False), sliding and full layers alternating
            GptOssConfig(**{**base, "max_position_embeddings": 131072}),
            # tied, plain RoPE, every layer full, top-3 of 4
            GptOssConfig(**{**base, "num_experts_per_tok": 3}, tie_word_embeddings=True,
                         rope_parameters=dict(rope_type="default", rope_theta=10000.0),
                         layer_types=["full_attention", "full_attention"]),
        ]
