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

from bridge import compat
from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.models import hf_config as H
from bridge.models._common import decoder_provider_kwargs
from bridge.models._llama_like import rope_kwargs
from bridge.models._moe import MOE_COMMON_OVERRIDES, MoEModelProvider
from bridge.models._routing import softmax_router_kwargs
from bridge.models._window import sliding_window_kwargs
from bridge.models._yarn import YarnRope, with_yarn, yarn_rope

__all__ = ["GptOssModelProvider", "gpt_oss_provider"]

_QUICK_GELU_ALPHA = 1.702  # fixed inside MCore's quick_gelu
_FEATURES = {  # compat feature -> what GPT-OSS uses it for, and the TransformerConfig fields behind it
    "learnable_softmax_offset": ("attention sinks (softmax_type='learnable')", ("softmax_type",)),
    "clamped_glu": ("the clamped SwiGLU", ("activation_func_clamp_value", "glu_linear_offset")),
    "yarn_rope": ("YaRN RoPE in the model class (position_embedding_type='yarn')", ()),
}


@dataclass
class GptOssModelProvider(MoEModelProvider):
    """GPT-OSS defaults: biases everywhere, the clamped SwiGLU's activation, and YaRN (``yarn``, not an MCore
    field: :func:`bridge.models._yarn.with_yarn` puts it on the built config)."""

    add_bias_linear: bool = True
    activation: str = "quick_gelu"
    yarn: YarnRope | None = None

    def validate(self) -> None:
        if self.tensor_model_parallel_size > 1:
            raise UnsupportedFeatureError(
                f"tensor_model_parallel_size={self.tensor_model_parallel_size}: MCore allows MoE biases (GPT-OSS's "
                "experts) only with expert_tensor_parallel_size=1, and the bridge splits experts with TP; use TP=1 "
                "(PP and EP are fine)"
            )
        missing = [f for f in _FEATURES if not compat.has_feature(f) and (f != "yarn_rope" or self.yarn)]
        if missing:
            first = max((compat.field_history()["fields"][n]["first"] for f in _FEATURES for n in _FEATURES[f][1]),
                        key=lambda v: tuple(map(int, v.split("."))))
            raise UnsupportedFeatureError(
                f"GPT-OSS needs {'; '.join(_FEATURES[f][0] for f in missing)}, which megatron-core "
                f"{compat.installed_version()} lacks (features {missing}). They arrived in megatron-core {first}: "
                f"pip install 'megatron-core>={first}'"
            )
        super().validate()

    def transformer_config(self):
        return with_yarn(super().transformer_config(), self.yarn)


def gpt_oss_provider(cfg: Any) -> GptOssModelProvider:
    """The provider of an HF ``GptOssConfig`` (module docstring); refuses what MCore cannot express exactly."""
    alpha = float(H.get(cfg, "swiglu_alpha", default=_QUICK_GELU_ALPHA))
    if alpha != _QUICK_GELU_ALPHA:
        raise ConfigError(f"swiglu_alpha={alpha}: MCore's clamped GLU uses quick_gelu, whose sigmoid gain is fixed "
                          f"at {_QUICK_GELU_ALPHA} (HF's default); other values cannot be represented")
    if not H.get(cfg, "attention_bias", default=True):
        raise ConfigError("attention_bias=False: MCore's add_bias_linear gives attention and experts biases together, "
                          "and GPT-OSS's experts and router always have them")
    experts, topk = int(cfg.num_local_experts), int(cfg.num_experts_per_tok)
    _, scaling = H.rope_parameters(cfg)
    yarn = yarn_rope(cfg) if scaling is not None and scaling["rope_type"] == "yarn" else None
    rope = {"rotary_base": H.rope_parameters(cfg)[0], "position_embedding_type": "yarn"} if yarn else rope_kwargs(cfg)
    window = sliding_window_kwargs(cfg, cfg.num_hidden_layers)
    return GptOssModelProvider(
        **decoder_provider_kwargs(cfg), **rope, yarn=yarn,
        window_size=window.get("window_size"),
        num_moe_experts=experts, moe_router_topk=topk, moe_ffn_hidden_size=cfg.intermediate_size,
        config_overrides={
            **MOE_COMMON_OVERRIDES,
            **softmax_router_kwargs(experts=experts, topk=topk, renormalise=True),
            **{k: v for k, v in window.items() if k != "window_size"},
            "softmax_type": "learnable",
            "activation_func_clamp_value": float(H.get(cfg, "swiglu_limit", default=7.0)),
            "glu_linear_offset": 1.0,
        },
    )
