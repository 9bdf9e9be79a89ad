"""Qwen3-MoE provider: HF ``Qwen3MoeConfig`` -> :class:`GPTModelProvider` fields, routing included.

Routing (HF ``Qwen3MoeTopKRouter``) and its MCore 0.16 equivalent
(``megatron/core/transformer/moe/moe_utils.py::topk_routing_with_score_function``):

===========================================  ==============================================
HF                                           MCore
===========================================  ==============================================
``softmax(logits)`` -> top-k                 ``moe_router_score_function="softmax"``,
(``norm_topk_prob=False``)                   ``moe_router_pre_softmax=True``
``softmax(logits)`` -> top-k -> ``p/sum p``  ``moe_router_pre_softmax=False``: top-k on the
(``norm_topk_prob=True``)                    logits, then softmax over the k logits (the same
                                             numbers up to rounding)
no token dropping                            ``moe_expert_capacity_factor=None``
``num_experts_per_tok``                      ``moe_router_topk``
``moe_intermediate_size``                    ``moe_ffn_hidden_size``
``mlp_only_layers``, ``decoder_sparse_step``  ``moe_layer_freq`` as a 0/1 list (dense = 0); unset
                                             when every layer is MoE
===========================================  ==============================================

Attention is Qwen3's (per-head ``q_norm``/``k_norm``; the optional sliding window as in
:mod:`bridge.models._window`).

HF's load-balancing loss only acts in training (and only with ``output_router_logits``);
it does not change the forward pass, so the provider switches MCore's auxiliary losses off
(``moe_aux_loss_coeff=0``, ``moe_router_load_balancing_type="none"``). Set them on the
provider for training. Experts are MCore's ``SequentialMLP`` (``moe_grouped_gemm=False``):
the pure-PyTorch path that runs on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._llama_like import llama_provider_kwargs
from bridge.models._moe import MOE_COMMON_OVERRIDES, MoEModelProvider, moe_layer_pattern
from bridge.models._window import sliding_window_kwargs

__all__ = ["Qwen3MoEModelProvider", "qwen3_moe_provider_kwargs"]


@dataclass
class Qwen3MoEModelProvider(MoEModelProvider):
    """Qwen3-MoE defaults: Llama layout plus per-head RMSNorm on queries and keys."""

    qk_layernorm: bool = True


def qwen3_moe_provider_kwargs(cfg: Any) -> dict[str, Any]:
    """Provider fields for a Qwen3-MoE config (see the module docstring for routing)."""
    num_layers = cfg.num_hidden_layers
    experts = H.get(cfg, "num_experts", "num_local_experts", default=0)
    step = H.get(cfg, "decoder_sparse_step", default=1)
    dense = set(H.get(cfg, "mlp_only_layers", default=[]) or [])
    topk = H.get(cfg, "num_experts_per_tok", default=1)
    if not experts:
        raise ConfigError("expected num_experts > 0 for Qwen3-MoE, found 0; use the dense Qwen3 family")
    if topk > experts:
        raise ConfigError(f"num_experts_per_tok ({topk}) must not exceed num_experts ({experts})")
    norm = bool(H.get(cfg, "norm_topk_prob", default=False))
    if topk == 1 and norm:
        raise ConfigError(
            "num_experts_per_tok=1 with norm_topk_prob=True gives every token its expert at weight 1.0; MCore "
            "requires moe_router_pre_softmax for top-1 and then weights by the softmax probability, so this "
            "routing has no MCore counterpart"
        )
    freq = moe_layer_pattern(num_layers, lambda i: i not in dense and (i + 1) % step == 0)
    kwargs = llama_provider_kwargs(cfg)
    window = sliding_window_kwargs(cfg, num_layers)  # every layer when use_sliding_window (HF Qwen3-MoE)
    kwargs.update(window_size=window.get("window_size"))
    kwargs.update(
        num_moe_experts=experts,
        moe_router_topk=topk,
        moe_ffn_hidden_size=H.get(cfg, "moe_intermediate_size", default=cfg.intermediate_size),
        config_overrides={
            **MOE_COMMON_OVERRIDES,
            **freq,
            "moe_router_score_function": "softmax",
            "moe_router_pre_softmax": not norm,
            **{k: v for k, v in window.items() if k != "window_size"},
        },
    )
    return kwargs
