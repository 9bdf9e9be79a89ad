"""HF routers as MCore router fields: the softmax top-k router of Mixtral/Qwen-MoE/OLMoE, and
DeepSeek's two (V2's softmax with greedy or group-limited choice, V3's sigmoid with expert bias).

MCore 0.16 (``transformer/moe/moe_utils.py::topk_routing_with_score_function``):

* ``moe_router_pre_softmax=True``: ``softmax(logits)`` then top-k (HF without renormalisation);
* ``moe_router_pre_softmax=False``: top-k on the logits, then a softmax over those k, which equals HF's
  ``softmax -> top-k -> p / sum p`` up to rounding; MCore rejects it for k = 1;
* group-limited choice scores a group by the sum of its top ``topk // group_topk`` scores.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H

__all__ = ["deepseek_v2_router_kwargs", "qwen_moe_layers", "sigmoid_router_kwargs", "softmax_router_kwargs"]


def softmax_router_kwargs(*, experts: int, topk: int, renormalise: bool) -> dict[str, Any]:
    """HF's ``softmax -> top-k`` router, renormalised (``norm_topk_prob``) or not, as MCore fields."""
    if not experts:
        raise ConfigError("expected num_experts > 0, found 0; a checkpoint without experts belongs to a dense family")
    if not 1 <= topk <= experts:
        raise ConfigError(f"num_experts_per_tok ({topk}) must be between 1 and num_experts ({experts})")
    if topk == 1 and renormalise:
        raise ConfigError(
            "num_experts_per_tok=1 with renormalised top-k gives every token its expert at weight 1.0; MCore "
            "requires moe_router_pre_softmax for top-1 and then weights by the softmax probability, so this "
            "routing has no MCore counterpart"
        )
    return {"moe_router_score_function": "softmax", "moe_router_pre_softmax": not renormalise}


def qwen_moe_layers(cfg: Any) -> Any:
    """Qwen-MoE's rule for which layers are MoE: not in ``mlp_only_layers`` and ``(i + 1) % decoder_sparse_step == 0``
    (a predicate over the layer index, for :func:`bridge.models._moe.moe_layer_pattern`)."""
    step = int(H.get(cfg, "decoder_sparse_step", default=1))
    dense = set(H.get(cfg, "mlp_only_layers", default=[]) or [])
    return lambda i: i not in dense and (i + 1) % step == 0


def _group_limited(cfg: Any, *, experts: int, topk: int, hf_group_top: int) -> dict[str, Any]:
    """``moe_router_num_groups``/``moe_router_group_topk`` when HF limits the choice to groups of experts.

    HF scores a group by its top ``hf_group_top`` experts (V2: the best one, V3: the best two); MCore
    by its top ``topk // topk_group``: the two agree only when those counts are equal.
    """
    groups = int(H.get(cfg, "n_group", default=1) or 1)
    group_topk = int(H.get(cfg, "topk_group", default=groups) or groups)
    if experts % groups:
        raise ConfigError(f"n_routed_experts ({experts}) must be a multiple of n_group ({groups})")
    if not (groups > 1 and group_topk < groups):
        return {"moe_router_num_groups": None, "moe_router_group_topk": None}
    if topk // group_topk != hf_group_top:
        raise ConfigError(
            f"group-limited routing scores a group by its top-{hf_group_top} expert(s) in HF but by its top "
            f"(num_experts_per_tok // topk_group) = {topk // group_topk} in MCore; they agree only when "
            f"num_experts_per_tok = {hf_group_top} x topk_group, found {topk} and {group_topk}"
        )
    return {"moe_router_num_groups": groups, "moe_router_group_topk": group_topk}


def sigmoid_router_kwargs(cfg: Any, *, experts: int, topk: int) -> dict[str, Any]:
    """DeepSeek-V3's sigmoid, bias-corrected, group-limited routing as MCore router fields."""
    norm = bool(H.get(cfg, "norm_topk_prob", default=True))
    if norm != (topk > 1):
        raise ConfigError(
            f"norm_topk_prob={norm} with num_experts_per_tok={topk}: MCore's sigmoid routing normalises the "
            "top-k weights exactly when k > 1; this combination has no MCore counterpart"
        )
    return {
        "moe_router_score_function": "sigmoid",
        "moe_router_enable_expert_bias": True,
        "moe_router_pre_softmax": False,
        **_group_limited(cfg, experts=experts, topk=topk, hf_group_top=2),
        "moe_router_topk_scaling_factor": float(H.get(cfg, "routed_scaling_factor", default=1.0)),
        "moe_router_dtype": "fp32",
    }


_V2_METHODS = ("greedy", "group_limited_greedy")


def deepseek_v2_router_kwargs(cfg: Any, *, experts: int, topk: int) -> dict[str, Any]:
    """DeepSeek-V2's router: ``softmax`` over every expert, top-k (greedy, or within the best
    ``topk_group`` of ``n_group`` groups, a group scored by its best expert), no renormalisation
    (HF's V2 ignores ``norm_topk_prob``), weights times ``routed_scaling_factor``; in float32."""
    method = H.get(cfg, "topk_method", default="greedy")
    if method not in _V2_METHODS:
        raise ConfigError(f"expected topk_method in {list(_V2_METHODS)} for DeepSeek-V2, found {method!r}")
    # Groups scored by their best expert, at least k of them kept: every global top-k expert sits in a kept
    # group (a group left out would need k better group maxima, i.e. k experts above a top-k one), so the
    # choice is the plain top-k.
    plain = method == "greedy" or int(H.get(cfg, "topk_group", default=0) or 0) >= topk
    groups = ({"moe_router_num_groups": None, "moe_router_group_topk": None} if plain
              else _group_limited(cfg, experts=experts, topk=topk, hf_group_top=1))
    return {
        "moe_router_score_function": "softmax",
        "moe_router_pre_softmax": True,
        **groups,
        "moe_router_topk_scaling_factor": float(H.get(cfg, "routed_scaling_factor", default=1.0)),
        "moe_router_dtype": "fp32",
    }
