"""GLM-4-MoE (GLM-4.5) provider: HF ``Glm4MoeConfig`` -> an MoE :class:`GPTModelProvider`.

==========================================  ==================================================
HF                                          MCore
==========================================  ==================================================
``partial_rotary_factor`` (0.5)             ``rotary_percent`` (both rotate the first half of
                                            each head, rotate-half style)
``attention_bias`` (q, k, v only)           ``add_qkv_bias`` (``o_proj`` has no bias)
``use_qk_norm`` (per head)                  ``qk_layernorm``
sigmoid router + expert bias, groups,       DeepSeek-V3's routing
``routed_scaling_factor``                   (:func:`bridge.models._routing.sigmoid_router_kwargs`)
``n_shared_experts``                        ``moe_shared_expert_intermediate_size``
``first_k_dense_replace``                   ``moe_layer_freq`` (0/1 list)
==========================================  ==================================================

Not bridged: the multi-token-prediction layer (``num_nextn_predict_layers``), which HF's
``Glm4MoeForCausalLM`` does not build either.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._common import decoder_provider_kwargs
from bridge.models._llama_like import rope_kwargs
from bridge.models._moe import MOE_COMMON_OVERRIDES, MoEModelProvider, moe_layer_pattern
from bridge.models._routing import sigmoid_router_kwargs

__all__ = ["glm4_moe_provider"]


def glm4_moe_provider(cfg: Any) -> MoEModelProvider:
    """The provider of an HF ``Glm4MoeConfig`` (see the module docstring)."""
    if H.get(cfg, "hidden_act", default="silu") != "silu":
        raise ConfigError(f"expected hidden_act 'silu' for GLM-4-MoE, found {cfg.hidden_act!r}")
    experts = int(H.get(cfg, "n_routed_experts", "num_local_experts"))
    topk = int(H.get(cfg, "num_experts_per_tok", default=1))
    moe_size = int(cfg.moe_intermediate_size)
    shared = int(H.get(cfg, "n_shared_experts", default=0))
    dense = int(H.get(cfg, "first_k_dense_replace", default=0))
    return MoEModelProvider(
        **decoder_provider_kwargs(cfg),
        **rope_kwargs(cfg),
        add_qkv_bias=bool(H.get(cfg, "attention_bias", default=False)),
        qk_layernorm=bool(H.get(cfg, "use_qk_norm", default=False)),
        num_moe_experts=experts,
        moe_router_topk=topk,
        moe_ffn_hidden_size=moe_size,
        moe_shared_expert_intermediate_size=moe_size * shared if shared else None,
        config_overrides={**MOE_COMMON_OVERRIDES, **moe_layer_pattern(cfg.num_hidden_layers, lambda i: i >= dense),
                          **sigmoid_router_kwargs(cfg, experts=experts, topk=topk)},
    )
