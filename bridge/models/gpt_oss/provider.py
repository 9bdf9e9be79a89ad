"""GPT-OSS provider: HF ``GptOssConfig`` -> an MoE :class:`GPTModelProvider` (every layer MoE).

=========================================================  ===========================================
HF (``modeling_gpt_oss.py``)                               MCore
=========================================================  ===========================================
attention sinks: a per-head logit joined to every softmax  ``softmax_type="learnable"``: the local
row and dropped after it                                   attention's ``SoftmaxOne`` (``softmax_offset``)
experts: ``g = min(gate, L)``, ``u = clamp(up, -L, L)``,   ``activation_func=quick_gelu`` (x*sigmoid(1.702x)),
``g * sigmoid(alpha * g) * (u + 1)``                       ``activation_func_clamp_value=L``,
                                                           ``glu_linear_offset=1.0``: exact for alpha 1.702
router ``linear(x, W, b)`` -> top-k -> softmax of the k    ``add_bias_linear`` (router bias),
                                                           ``moe_router_pre_softmax=False``
q/k/v/o, router and expert biases                          ``add_bias_linear=True`` (all of them)
``layer_types`` sliding / full                             ``window_size`` + ``window_attn_skip_freq``
YaRN ``rope_parameters``                                   ``position_embedding_type="yarn"``
                                                           (:mod:`bridge.models._yarn`)
=========================================================  ===========================================

The experts weight their output, bias included, by the routing weight; MCore's ``SequentialMLP`` scales the
activation and the ``linear_fc2`` bias by it: the same up to rounding. Every piece arrived in megatron-core
0.15.0 (the fields per the field history; ``GPTModel``'s YaRN read from the 0.14/0.15 wheels), and the
provider refuses (``UnsupportedFeatureError``) on a release without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._common import decoder_provider_kwargs, require_features
from bridge.models._moe import MOE_COMMON_OVERRIDES, MoEModelProvider
from bridge.models._routing import softmax_router_kwargs
from bridge.models._window import sliding_window_kwargs
from bridge.models._yarn import YarnRope, with_yarn, yarn_or_rope_kwargs

__all__ = ["GptOssModelProvider", "gpt_oss_provider"]

_QUICK_GELU_ALPHA = 1.702  # fixed inside MCore's quick_gelu
_NEEDS = {"learnable_softmax_offset": "attention sinks (softmax_type='learnable')", "clamped_glu": "the clamped SwiGLU",
          "yarn_rope": "YaRN RoPE in the model class (position_embedding_type='yarn')"}


@dataclass
class GptOssModelProvider(MoEModelProvider):
    """GPT-OSS defaults: biases everywhere, the clamped SwiGLU's activation, and YaRN (``yarn``, not an MCore
    field: :func:`bridge.models._yarn.with_yarn` puts it on the built config)."""

    add_bias_linear: bool = True
    activation: str = "quick_gelu"
    yarn: YarnRope | None = None

    def validate(self) -> None:
        require_features("GPT-OSS", {f: what for f, what in _NEEDS.items() if f != "yarn_rope" or self.yarn},
                         fields=("softmax_type", "activation_func_clamp_value", "glu_linear_offset"))
        super().validate()  # TP > 1 refused there: MCore's MoE biases need expert_tensor_parallel_size=1

    def transformer_config(self):
        return with_yarn(super().transformer_config(), self.yarn)


def gpt_oss_provider(cfg: Any) -> GptOssModelProvider:
    """The provider of an HF ``GptOssConfig`` (module docstring); refuses what MCore cannot express exactly."""
    if (alpha := float(H.get(cfg, "swiglu_alpha", default=_QUICK_GELU_ALPHA))) != _QUICK_GELU_ALPHA:
        raise ConfigError(f"swiglu_alpha={alpha}: MCore's clamped GLU uses quick_gelu, whose sigmoid gain is fixed "
                          f"at {_QUICK_GELU_ALPHA} (HF's default); other values cannot be represented")
    if not H.get(cfg, "attention_bias", default=True):
        raise ConfigError("attention_bias=False: MCore's add_bias_linear gives attention and experts biases together, "
                          "and GPT-OSS's experts and router always have them")
    experts, topk = int(cfg.num_local_experts), int(cfg.num_experts_per_tok)
    # the window goes in config_overrides, not setattr: a release without window_attn_skip_freq then gets validate()'s
    # GPT-OSS refusal (every missing feature, the release bringing them) instead of a constructor error on one field
    window = sliding_window_kwargs(cfg, cfg.num_hidden_layers)
    return GptOssModelProvider(
        **decoder_provider_kwargs(cfg), **yarn_or_rope_kwargs(cfg), window_size=window.pop("window_size", None),
        num_moe_experts=experts, moe_router_topk=topk, moe_ffn_hidden_size=cfg.intermediate_size,
        config_overrides={
            **MOE_COMMON_OVERRIDES, **softmax_router_kwargs(experts=experts, topk=topk, renormalise=True), **window,
            "softmax_type": "learnable", "glu_linear_offset": 1.0,
            "activation_func_clamp_value": float(H.get(cfg, "swiglu_limit", default=7.0)),
        },
    )
