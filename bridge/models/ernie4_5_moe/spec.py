"""Ernie-4.5-MoE's router on MCore's local MoE spec: softmax scores, an expert bias for the choice only.

HF's ``Ernie4_5_MoeTopKRouter`` (in float32): ``p = softmax(logits)``; the top-k experts of
``p + e_score_correction_bias``; their weights ``p`` (without the bias), divided by
``max(sum, moe_norm_min)``. MCore 0.16's routing adds an expert bias only to sigmoid scores (its config
refuses ``moe_router_enable_expert_bias`` with softmax), and renormalises with ``+ 1e-20`` instead of a
floor. :class:`BiasedSoftmaxRouter` is MCore's ``TopKRouter`` (its gating linear, weight and dispatch
contract) with that routing in place of MCore's; the spec's ``router`` slot of the MoE submodules
(feature ``moe_router_submodule`` of :mod:`bridge.compat`) carries it. No MCore code is changed.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from megatron.core.transformer.moe.router import TopKRouter

from bridge import compat
from bridge.errors import UnsupportedFeatureError
from bridge.models._mcore_layers import configured, edit_layers

__all__ = ["BiasedSoftmaxRouter", "with_biased_softmax_router"]


class BiasedSoftmaxRouter(TopKRouter):
    """Top-k of ``softmax(logits) + expert_bias``, weighted by the softmax, renormalised with a floor."""

    norm_min: float = 1e-12

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        del self.expert_bias  # None unless sigmoid routing; this router always has one
        self.register_buffer("expert_bias", torch.zeros(config.num_moe_experts, dtype=torch.float32,
                                                        device=self.weight.device))

    def routing(self, logits: torch.Tensor, padding_mask: Any = None):
        logits = logits.reshape(-1, self.config.num_moe_experts)
        scores = torch.softmax(logits, dim=-1, dtype=torch.float32)
        _, chosen = torch.topk(scores + self.expert_bias, self.topk, dim=-1)
        weights = scores.gather(1, chosen)
        weights = weights / torch.clamp(weights.sum(dim=-1, keepdim=True), min=self.norm_min)
        probs = torch.zeros_like(scores).scatter(1, chosen, weights).to(logits.dtype)
        routing_map = torch.zeros_like(scores, dtype=torch.bool).scatter(1, chosen, True)
        return probs, routing_map


def with_biased_softmax_router(spec: Any, *, norm_min: float) -> Any:
    """A copy of ``spec`` (layer or block spec) whose MoE layers route with :class:`BiasedSoftmaxRouter`."""
    router = configured(BiasedSoftmaxRouter, norm_min=norm_min)
    edited: list[Any] = []

    def edit(layer: Any) -> None:
        mlp = compat.spec_submodules(layer.submodules.mlp) if hasattr(layer.submodules, "mlp") else None
        if hasattr(mlp, "router"):  # MoESubmodules (a dense layer's MLPSubmodules has none)
            mlp.router = router
            edited.append(layer)

    if hasattr(spec, "layer_specs"):  # get_gpt_decoder_block_spec's TransformerBlockSubmodules (dense + MoE layers)
        spec = copy.deepcopy(spec)
        for layer in {id(layer): layer for layer in spec.layer_specs}.values():
            edit(layer)
    else:
        spec = edit_layers(spec, edit)
    if not edited:
        raise UnsupportedFeatureError(
            f"found no MoE layer with a router slot in megatron-core {compat.installed_version()}'s layer spec; "
            "Ernie-4.5-MoE's routing cannot be put in place, so the model would route differently from HF")
    return spec
