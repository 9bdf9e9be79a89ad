"""DeepSeek-V3 provider: HF ``DeepseekV3Config`` -> an MLA + MoE :class:`GPTModelProvider`.

Attention is Multi-Latent Attention and the layers are dense for the first
``first_k_dense_replace`` layers and MoE after, as in every DeepSeek-shaped family
(:mod:`bridge.models._mla` maps those fields). V3's own part is its router:

==================================  =======================================================
HF                                  MCore (0.16)
==================================  =======================================================
sigmoid router, ``scores + bias``   ``moe_router_score_function="sigmoid"``,
for the choice only                 ``moe_router_enable_expert_bias=True`` (``router.expert_bias``)
``n_group``, ``topk_group``         ``moe_router_num_groups``, ``moe_router_group_topk``
``norm_topk_prob`` (k > 1)          always on in MCore's sigmoid routing for k > 1
``routed_scaling_factor``           ``moe_router_topk_scaling_factor``
router in float32                   ``moe_router_dtype="fp32"``
==================================  =======================================================

Parity with HF on CPU (fp32, eager; ``tests/bridge/models/test_deepseek_v3.py``, MCore 0.16.1):
max |logit diff| ~2e-6, within the 1e-5 budget. Per component on equal inputs: MLA attention
(RoPE and YaRN, with and without q LoRA) and dense MLP 0.0; router probabilities 0.0; MoE block
~1e-5 on outputs of magnitude ~30 (summation order of the weighted expert outputs).
"""

from __future__ import annotations

from typing import Any

from bridge.models._mla import MLAModelProvider, deepseek_provider_kwargs
from bridge.models._routing import sigmoid_router_kwargs

__all__ = ["deepseek_v3_provider"]


def deepseek_v3_provider(cfg: Any) -> MLAModelProvider:
    """The provider of an HF ``DeepseekV3Config`` (see the module docstring)."""
    return MLAModelProvider(**deepseek_provider_kwargs(cfg, router=sigmoid_router_kwargs, family="DeepSeek-V3"))
