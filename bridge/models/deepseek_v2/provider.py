"""DeepSeek-V2 / V2-Lite provider: HF ``DeepseekV2Config`` -> an MLA + MoE :class:`GPTModelProvider`.

Attention, dense first layers and shared experts map as for every DeepSeek-shaped family
(:mod:`bridge.models._mla`); V2-Lite has no query LoRA (``q_lora_rank=None``: ``linear_q_proj``).
V2's own part is its router (:func:`bridge.models._routing.deepseek_v2_router_kwargs`): a softmax over
every expert, top-k without renormalisation, times ``routed_scaling_factor``.

HF's ``group_limited_greedy`` scores each of ``n_group`` groups by its best expert and keeps the best
``topk_group`` groups. When ``topk_group >= num_experts_per_tok`` that choice is the plain top-k (each
of the global top-k experts sits in a group whose best expert beats every group outside the chosen
ones), so it maps to MCore's ungrouped routing. DeepSeek-V2 itself (6 of 160 experts within 3 of 8
groups) has no MCore counterpart: MCore scores a group by the sum of its top ``topk // topk_group``
(= 2) experts, so it is refused with that explanation.
"""

from __future__ import annotations

from typing import Any

from bridge.models._mla import MLAModelProvider, deepseek_provider_kwargs
from bridge.models._routing import deepseek_v2_router_kwargs

__all__ = ["deepseek_v2_provider"]


def deepseek_v2_provider(cfg: Any) -> MLAModelProvider:
    """The provider of an HF ``DeepseekV2Config`` (see the module docstring)."""
    return MLAModelProvider(**deepseek_provider_kwargs(cfg, router=deepseek_v2_router_kwargs, family="DeepSeek-V2"))
