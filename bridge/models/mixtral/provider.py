"""Mixtral provider: HF ``MixtralConfig`` -> an MoE :class:`GPTModelProvider` (every layer MoE).

HF's ``MixtralTopKRouter`` takes ``softmax(logits)``, keeps the top k and renormalises them; MCore's
``moe_router_pre_softmax=False`` takes the top k logits and a softmax over those k: the same numbers
up to rounding. ``intermediate_size`` is each expert's width (Mixtral has no dense MLP). Attention is
Mistral's: Llama's, with the optional sliding window on every layer.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._llama_like import llama_provider_kwargs
from bridge.models._moe import MOE_COMMON_OVERRIDES, MoEModelProvider
from bridge.models._window import sliding_window_kwargs

__all__ = ["mixtral_provider"]


def mixtral_provider(cfg: Any) -> MoEModelProvider:
    """The provider of an HF ``MixtralConfig``."""
    experts = int(H.get(cfg, "num_local_experts", default=0))
    topk = int(H.get(cfg, "num_experts_per_tok", default=2))
    if not 1 < topk <= experts:
        raise ConfigError(
            f"expected 2 <= num_experts_per_tok <= num_local_experts, found {topk} and {experts}: HF Mixtral "
            "renormalises the top-k probabilities (a top-1 token gets weight 1.0), which MCore's softmax router "
            "expresses only for k > 1 (top-1 needs moe_router_pre_softmax, weighting by the probability)"
        )
    window = sliding_window_kwargs(cfg, cfg.num_hidden_layers)
    if "window_attn_skip_freq" in window:
        raise ConfigError("HF Mixtral windows every layer or none; found a per-layer pattern (layer_types)")
    return MoEModelProvider(
        **llama_provider_kwargs(cfg),
        window_size=window.get("window_size"),
        num_moe_experts=experts,
        moe_router_topk=topk,
        moe_ffn_hidden_size=cfg.intermediate_size,
        config_overrides={**MOE_COMMON_OVERRIDES, "moe_router_score_function": "softmax",
                          "moe_router_pre_softmax": False},
    )
