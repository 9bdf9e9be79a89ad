"""OLMoE provider: HF ``OlmoeConfig`` -> an MoE :class:`GPTModelProvider` (every layer MoE).

HF's softmax top-k router (``norm_topk_prob``) maps as Qwen-MoE's
(:func:`bridge.models._routing.softmax_router_kwargs`); ``intermediate_size`` is each expert's width.
Its QK norm spans the whole query (key) projection, not each head: MCore has no field for that, so the
provider's layer spec carries the norm of :mod:`bridge.models.olmoe.spec` (TP = 1 only). HF's
``clip_qkv`` (clamping q, k, v) has no MCore counterpart and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.models import hf_config as H
from bridge.models._llama_like import llama_provider_kwargs
from bridge.models._moe import MOE_COMMON_OVERRIDES, MoEModelProvider
from bridge.models._routing import softmax_router_kwargs

__all__ = ["OLMoEModelProvider", "olmoe_provider"]


@dataclass
class OLMoEModelProvider(MoEModelProvider):
    """MoE layers whose QK norms normalise the whole projection (see :mod:`bridge.models.olmoe.spec`)."""

    qk_layernorm: bool = True

    def validate(self) -> None:
        if self.tensor_model_parallel_size > 1:
            raise UnsupportedFeatureError(
                f"tensor_model_parallel_size={self.tensor_model_parallel_size}: OLMoE normalises the whole query "
                "and key projections, which TP splits across ranks by heads; use TP=1 (PP and EP are fine)"
            )
        super().validate()

    def layer_spec(self):
        spec = super().layer_spec()
        if self.transformer_layer_spec is not None:
            return spec
        from bridge.models.olmoe.spec import with_whole_projection_qk_norm

        return with_whole_projection_qk_norm(spec)


def olmoe_provider(cfg: Any) -> OLMoEModelProvider:
    """The provider of an HF ``OlmoeConfig`` (see the module docstring)."""
    if H.get(cfg, "clip_qkv") is not None:
        raise ConfigError(f"clip_qkv={cfg.clip_qkv}: HF clamps q, k and v to that range, which MCore cannot; "
                          "only checkpoints with clip_qkv=null convert")
    kwargs = llama_provider_kwargs(cfg)
    if kwargs["num_attention_heads"] * kwargs["kv_channels"] != kwargs["hidden_size"]:
        raise ConfigError("expected num_attention_heads x head_dim == hidden_size (HF's OLMoE q_norm is "
                          f"hidden_size wide), found {kwargs['num_attention_heads']} x {kwargs['kv_channels']}")
    experts = int(H.get(cfg, "num_experts", default=0))
    topk = int(H.get(cfg, "num_experts_per_tok", default=1))
    return OLMoEModelProvider(
        **kwargs,
        num_moe_experts=experts,
        moe_router_topk=topk,
        moe_ffn_hidden_size=cfg.intermediate_size,
        config_overrides={**MOE_COMMON_OVERRIDES, **softmax_router_kwargs(
            experts=experts, topk=topk, renormalise=bool(H.get(cfg, "norm_topk_prob", default=False)))},
    )
