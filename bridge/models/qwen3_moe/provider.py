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
:mod:`bridge.models.mistral.provider`).

HF's load-balancing loss only acts in training (and only with ``output_router_logits``);
it does not change the forward pass, so the provider switches MCore's auxiliary losses off
(``moe_aux_loss_coeff=0``, ``moe_router_load_balancing_type="none"``). Set them on the
provider for training. Experts are MCore's ``SequentialMLP`` (``moe_grouped_gemm=False``):
the pure-PyTorch path that runs on CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bridge import compat
from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.models import hf_config as H
from bridge.models.llama.provider import LlamaModelProvider, llama_provider_kwargs
from bridge.models.mistral.provider import sliding_window_kwargs

__all__ = ["MOE_COMMON_OVERRIDES", "MoEModelProvider", "Qwen3MoEModelProvider", "moe_layer_pattern",
           "qwen3_moe_provider_kwargs"]

# Settings every bridged MoE shares: no token dropping, no training-only losses, experts as
# SequentialMLP, and the all-gather dispatcher (the all-to-all one creates a CUDA stream when built).
MOE_COMMON_OVERRIDES: dict[str, Any] = {
    "moe_expert_capacity_factor": None,
    "moe_aux_loss_coeff": 0.0,
    "moe_router_load_balancing_type": "none",
    "moe_token_dispatcher_type": "allgather",
    "moe_grouped_gemm": False,
}


@dataclass
class MoEModelProvider(LlamaModelProvider):
    """A Llama-like provider whose layers may mix MoE and dense MLPs.

    When ``config_overrides["moe_layer_freq"]`` is a 0/1 list with dense layers (0), the
    layers are built from MCore's ``get_gpt_decoder_block_spec`` (local, non-TE modules),
    which picks the dense or the MoE local spec per layer and slices them per PP stage;
    otherwise the single local layer spec is used.
    """

    def _experts_need_the_dense_size(self) -> bool:
        """Local experts of a release that sizes them with ``ffn_hidden_size`` (feature
        ``local_experts_own_size`` of :mod:`bridge.compat` missing: 0.10, 0.11)."""
        moe_size = self.moe_ffn_hidden_size or self.ffn_hidden_size
        return (bool(self.num_moe_experts) and self.transformer_layer_spec is None
                and moe_size != self.ffn_hidden_size and not compat.has_feature("local_experts_own_size"))

    def validate(self) -> None:
        if self._experts_need_the_dense_size() and self.heterogeneous:
            raise UnsupportedFeatureError(
                f"dense layers of size {self.ffn_hidden_size} next to experts of size {self.moe_ffn_hidden_size}: "
                f"megatron-core {compat.installed_version()} builds local experts (SequentialMLP) with "
                "ffn_hidden_size only, so both sizes cannot coexist. Upgrade megatron-core (0.12 lifts this)."
            )
        super().validate()

    def transformer_config(self):
        """As for any provider; where local experts are sized by ``ffn_hidden_size`` (0.10, 0.11) and every
        layer is MoE (so no dense MLP uses it), ``ffn_hidden_size`` is the experts' size."""
        config = super().transformer_config()
        if self._experts_need_the_dense_size() and not self.heterogeneous:
            config = dataclasses.replace(config, ffn_hidden_size=config.moe_ffn_hidden_size)
        return config

    def layer_spec_kwargs(self) -> dict[str, Any]:
        kwargs = super().layer_spec_kwargs()
        if self.config_class == "MLATransformerConfig":
            kwargs["multi_latent_attention"] = True
        return kwargs

    @property
    def heterogeneous(self) -> bool:
        freq = self.config_overrides.get("moe_layer_freq")
        return isinstance(freq, list) and not all(freq)

    def layer_spec(self):
        if self.transformer_layer_spec is not None or not self.heterogeneous:
            return super().layer_spec()
        from megatron.core.models.gpt import gpt_layer_specs

        fn = gpt_layer_specs.get_gpt_decoder_block_spec
        extra = compat.adapt_call_kwargs(fn, {"normalization": self.normalization}, "get_gpt_decoder_block_spec")
        return fn(self.transformer_config(), use_transformer_engine=False, **extra)


@dataclass
class Qwen3MoEModelProvider(MoEModelProvider):
    """Qwen3-MoE defaults: Llama layout plus per-head RMSNorm on queries and keys."""

    qk_layernorm: bool = True


def moe_layer_pattern(num_layers: int, is_moe: Any) -> dict[str, Any]:
    """``{"moe_layer_freq": [0/1 per layer]}`` (1 = MoE) when some layers are dense, ``{}`` when none is
    (MCore's default: every layer MoE; older releases without the field then still work)."""
    pattern = [1 if is_moe(i) else 0 for i in range(num_layers)]
    if not any(pattern):
        raise ConfigError(
            f"expected at least one MoE layer, found none of {num_layers} layers; "
            "a checkpoint without experts belongs to a dense family"
        )
    return {} if all(pattern) else {"moe_layer_freq": pattern}


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
