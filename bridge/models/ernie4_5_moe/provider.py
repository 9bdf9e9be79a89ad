"""Ernie-4.5-MoE provider: HF ``Ernie4_5_MoeConfig`` -> an MoE :class:`GPTModelProvider`.

==========================================  ==================================================
HF                                          MCore
==========================================  ==================================================
RoPE on interleaved pairs (GLM style)       ``rotary_interleaved``
softmax router, expert bias for the choice  :class:`~bridge.models.ernie4_5_moe.spec.BiasedSoftmaxRouter`
only, renormalised with ``moe_norm_min``    in the layer spec (MCore has no such routing)
``moe_num_shared_experts``                  ``moe_shared_expert_intermediate_size``
``moe_layer_start_index`` / ``_end_index``  ``moe_layer_freq`` (0/1 list)
/ ``_interval``
==========================================  ==================================================

Refused: ``use_bias`` (HF then biases ``lm_head`` too, which MCore's output layer lacks). Not bridged: the
multi-token-prediction layer (``num_mtp_layers``), which HF's ``Ernie4_5_MoeForCausalLM`` does not build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge import compat
from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.models import hf_config as H
from bridge.models._common import decoder_provider_kwargs
from bridge.models._llama_like import rope_kwargs
from bridge.models._moe import MOE_COMMON_OVERRIDES, MoEModelProvider, moe_layer_pattern

__all__ = ["ErnieMoEModelProvider", "ernie4_5_moe_provider"]


@dataclass
class ErnieMoEModelProvider(MoEModelProvider):
    """MoE layers routed by :class:`~bridge.models.ernie4_5_moe.spec.BiasedSoftmaxRouter`."""

    moe_norm_min: float = 1e-12

    def validate(self) -> None:
        if self.transformer_layer_spec is None and not compat.has_feature("moe_router_submodule"):
            raise UnsupportedFeatureError(
                f"Ernie-4.5-MoE routes with softmax scores plus an expert bias, which MCore's router lacks; the "
                f"bridge puts its own router in the layer spec, but megatron-core {compat.installed_version()}'s "
                "MoE spec has no router slot (MoESubmodules.router). Upgrade megatron-core.")
        super().validate()

    def layer_spec(self):
        spec = super().layer_spec()
        if self.transformer_layer_spec is not None:
            return spec
        from bridge.models.ernie4_5_moe.spec import with_biased_softmax_router

        return with_biased_softmax_router(spec, norm_min=self.moe_norm_min)


def ernie4_5_moe_provider(cfg: Any) -> ErnieMoEModelProvider:
    """The provider of an HF ``Ernie4_5_MoeConfig`` (see the module docstring)."""
    if H.get(cfg, "hidden_act", default="silu") != "silu":
        raise ConfigError(f"expected hidden_act 'silu' for Ernie-4.5-MoE, found {cfg.hidden_act!r}")
    if H.get(cfg, "use_bias", default=False):
        raise ConfigError("use_bias=True: HF then adds biases to every linear layer including lm_head, and MCore's "
                          "output layer has no bias; only checkpoints with use_bias=false convert")
    experts = int(H.get(cfg, "moe_num_experts", "num_experts", default=0))
    topk = int(H.get(cfg, "moe_k", "num_experts_per_tok", default=1))
    if not 1 <= topk <= experts:
        raise ConfigError(f"expected 1 <= moe_k <= moe_num_experts, found {topk} and {experts}")
    layers = cfg.num_hidden_layers
    start, end = int(H.get(cfg, "moe_layer_start_index", default=0)), H.get(cfg, "moe_layer_end_index", default=-1)
    end = layers - 1 if end in (None, -1) else int(end)
    step = int(H.get(cfg, "moe_layer_interval", default=1))
    size, shared = int(cfg.moe_intermediate_size), int(H.get(cfg, "moe_num_shared_experts", default=0) or 0)
    return ErnieMoEModelProvider(
        **decoder_provider_kwargs(cfg, tied=True),
        **rope_kwargs(cfg),
        moe_norm_min=float(H.get(cfg, "moe_norm_min", default=1e-12)),
        num_moe_experts=experts,
        moe_router_topk=topk,
        moe_ffn_hidden_size=size,
        moe_shared_expert_intermediate_size=size * shared if shared else None,
        config_overrides={**MOE_COMMON_OVERRIDES, "rotary_interleaved": True, "moe_router_dtype": "fp32",
                          "moe_router_score_function": "softmax", "moe_router_pre_softmax": True,
                          **moe_layer_pattern(layers, lambda i: (i + 1) % step == 0 and start <= i <= end)},
    )
