"""Qwen2-MoE provider: HF ``Qwen2MoeConfig`` -> an MoE :class:`GPTModelProvider` with a gated shared expert.

==========================================  ==================================================
HF                                          MCore
==========================================  ==================================================
softmax top-k router (``norm_topk_prob``)   :func:`bridge.models._routing.softmax_router_kwargs`
``mlp_only_layers``, ``decoder_sparse_step``  ``moe_layer_freq`` (0/1 list; dense layers use
                                            ``intermediate_size``)
``shared_expert`` (always on)               ``moe_shared_expert_intermediate_size``
``sigmoid(shared_expert_gate(x)) * s(x)``   ``moe_shared_expert_gate=True`` (megatron-core >= 0.16)
``qkv_bias``                                ``add_qkv_bias``
==========================================  ==================================================

The sliding window maps as for Qwen2 (:mod:`bridge.models._window`).
"""

from __future__ import annotations

from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._llama_like import llama_provider_kwargs
from bridge.models._moe import MOE_COMMON_OVERRIDES, MoEModelProvider, moe_layer_pattern
from bridge.models._routing import qwen_moe_layers, softmax_router_kwargs
from bridge.models._window import sliding_window_kwargs

__all__ = ["qwen2_moe_provider"]


def qwen2_moe_provider(cfg: Any) -> MoEModelProvider:
    """The provider of an HF ``Qwen2MoeConfig``."""
    shared = int(H.get(cfg, "shared_expert_intermediate_size", default=0))
    if shared <= 0:
        raise ConfigError(f"expected shared_expert_intermediate_size > 0 (HF Qwen2-MoE always builds its shared "
                          f"expert), found {shared}")
    router = softmax_router_kwargs(experts=int(H.get(cfg, "num_experts", default=0)),
                                   topk=int(H.get(cfg, "num_experts_per_tok", default=1)),
                                   renormalise=bool(H.get(cfg, "norm_topk_prob", default=False)))
    window = sliding_window_kwargs(cfg, cfg.num_hidden_layers)
    return MoEModelProvider(
        **llama_provider_kwargs(cfg),
        add_qkv_bias=bool(H.get(cfg, "qkv_bias", default=True)),
        window_size=window.pop("window_size", None),
        num_moe_experts=int(cfg.num_experts),
        moe_router_topk=int(cfg.num_experts_per_tok),
        moe_ffn_hidden_size=int(cfg.moe_intermediate_size),
        moe_shared_expert_intermediate_size=shared,
        config_overrides={**MOE_COMMON_OVERRIDES, **moe_layer_pattern(cfg.num_hidden_layers, qwen_moe_layers(cfg)),
                          **router, "moe_shared_expert_gate": True, **window},
    )
