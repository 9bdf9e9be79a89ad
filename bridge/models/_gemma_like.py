"""What the Gemma families share: Gemma 1's provider (zero-centred RMSNorm, scaled embeddings,
GeGLU-tanh, tied embeddings) and the Gemma 2/3 provider built on it (post-attention and post-MLP
norms, logit soft-capping, a second RoPE base for the sliding layers).

Needs more than ``TransformerConfig`` fields on megatron-core 0.16.1:

* **RMSNorm with ``(1 + weight)``**: a block spec whose norms are
  :class:`bridge.models._norms.ZeroCenteredRMSNorm` (see :mod:`bridge.models._norms` for why).
* **Embeddings multiplied by ``sqrt(hidden_size)``.** ``GPTModel`` has no option for it (no
  embedding-scale field or argument exists in 0.16.1). :meth:`GemmaModelProvider.provide` registers a
  forward hook (``torch.nn.Module.register_forward_hook``, public torch API on the built instance;
  MCore's code is untouched) on ``model.embedding`` that multiplies its output by
  ``sqrt(hidden_size)`` rounded to the parameter dtype, as HF does.
* **Gemma 2/3 layers**: MCore's local GPT layer has no post-norms, no attention soft-capping and one
  RoPE base for all layers; :class:`Gemma2ModelProvider` builds its layer from the modules of
  :mod:`bridge.models._mcore_layers`. The final-logit soft-capping is a forward hook on
  ``output_layer``, like the embedding scale.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from bridge import compat
from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.mappings import AutoMapping
from bridge.models import hf_config as H
from bridge.models._common import decoder_provider_kwargs, replace_rows
from bridge.models._llama_like import llama_mappings
from bridge.models._norms import ZeroCenteredRMSNorm, zero_centered_block_spec
from bridge.models._window import sliding_window_kwargs
from bridge.providers import GPTModelProvider

__all__ = ["POST_NORM_LAYER_MODULES", "Gemma2ModelProvider", "GemmaModelProvider", "gemma2_provider_kwargs", "gemma_provider_kwargs",
           "post_norm_layer_spec", "post_norm_mappings"]

# HF activation names that mean GELU with the tanh approximation for Gemma (transformers maps the
# legacy ``hidden_act="gelu"`` of the original releases to the tanh form, see GemmaConfig).
_TANH_GELU = {"gelu_pytorch_tanh", "gelu_tanh", "gelu_new", "gelu"}


def _scale_output(module: torch.nn.Module, inputs: Any, output: torch.Tensor, *, scale: float) -> torch.Tensor:
    # HF: ``embeds * torch.tensor(hidden_size ** 0.5).to(dtype)`` (fp32 constant, then rounded).
    return output * torch.tensor(scale, dtype=torch.float32, device=output.device).to(output.dtype)


@dataclass
class GemmaModelProvider(GPTModelProvider):
    """Gemma defaults (RMSNorm, a gated MLP, RoPE and no linear biases are GPTModelProvider's); see the
    module docstring for the norm and the embedding scale."""

    layernorm_zero_centered_gamma: bool = True
    activation: str = "gelu_tanh"
    share_embeddings_and_output_weights: bool = True

    @property
    def embedding_multiplier(self) -> float:
        """What the word embeddings are multiplied by: ``sqrt(hidden_size)``."""
        return math.sqrt(self.hidden_size)

    def validate(self) -> None:
        if not self.layernorm_zero_centered_gamma or self.normalization != "RMSNorm":
            raise ConfigError(
                "Gemma's norms are RMSNorm with zero-centred weights; found normalization="
                f"{self.normalization!r}, layernorm_zero_centered_gamma={self.layernorm_zero_centered_gamma}. "
                "Leave both at their defaults."
            )
        super().validate()

    def layer_spec(self):
        if self.transformer_layer_spec is None:
            return zero_centered_block_spec(self)
        return super().layer_spec()

    def provide(self, pre_process: bool = True, post_process: bool = True, vp_stage: int | None = None):
        model = super().provide(pre_process=pre_process, post_process=post_process, vp_stage=vp_stage)
        embedding = getattr(model, "embedding", None)
        if embedding is not None:
            embedding.register_forward_hook(functools.partial(_scale_output, scale=self.embedding_multiplier))
        return model


def _activation(cfg: Any) -> str:
    # transformers 4.x reads ``hidden_activation`` when set (literally); 5.x has ``hidden_act`` only.
    explicit = H.get(cfg, "hidden_activation")
    if explicit is not None:
        names = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu"}
        if explicit not in names:
            raise ConfigError(f"expected Gemma hidden_activation in {sorted(names)}, found {explicit!r}")
        return names[explicit]
    act = H.get(cfg, "hidden_act", default="gelu_pytorch_tanh")
    if act not in _TANH_GELU:
        raise ConfigError(f"expected Gemma hidden_act in {sorted(_TANH_GELU)} (GELU, tanh form), found {act!r}")
    return "gelu_tanh"


def gemma_provider_kwargs(cfg: Any, *, rope: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provider fields of an HF ``GemmaConfig``; ``rope``: the RoPE fields, for a family that reads
    them its own way (Gemma 3), else plain RoPE from the config (scaling refused)."""
    if H.get(cfg, "attention_bias", default=False):
        raise ConfigError(
            "attention_bias=True: MCore adds output-projection and MLP biases only together (add_bias_linear), "
            "and Gemma's MLP has none; such a checkpoint cannot be represented"
        )
    if H.get(cfg, "use_bidirectional_attention", default=False):
        raise ConfigError("use_bidirectional_attention=True: the bridge builds causal GPT models only")
    if rope is None:
        theta, scaling = H.rope_parameters(cfg)
        if scaling is not None:
            raise ConfigError(f"RoPE scaling {scaling['rope_type']!r} is not supported for Gemma; expected none")
        rope = {"rotary_base": theta}
    return {
        **decoder_provider_kwargs(cfg, seq_length=8192, tied=True),
        "activation": _activation(cfg),
        **rope,
    }


def _soft_cap_logits(module: torch.nn.Module, inputs: Any, output: Any, *, cap: float) -> Any:
    # HF: ``logits = tanh(logits / cap) * cap`` after lm_head. ``output_layer`` returns (logits, bias).
    logits, bias = output
    return torch.tanh(logits / cap) * cap, bias


@dataclass
class Gemma2ModelProvider(GemmaModelProvider):
    """Gemma 2 and 3: Gemma's provider with post-attention and post-MLP norms, and optionally
    attention/final logit soft-capping and a second RoPE base on the layers ``local_layers`` (1-based)."""

    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    local_layers: tuple[int, ...] = ()
    local_rotary_base: float | None = None

    def validate(self) -> None:
        if self.transformer_layer_spec is None and self.attn_logit_softcapping \
                and not compat.has_feature("local_attention_softmax_module"):
            raise UnsupportedFeatureError(
                f"attn_logit_softcapping={self.attn_logit_softcapping}: the soft-capped attention wraps the local "
                f"DotProductAttention's softmax module, which megatron-core {compat.installed_version()} does not "
                "call; upgrade megatron-core, or pass a transformer_layer_spec that soft-caps"
            )
        super().validate()

    def layer_spec(self):
        if self.transformer_layer_spec is not None:
            return super().layer_spec()
        return zero_centered_block_spec(self, post_norm_layer_spec(self))

    def provide(self, pre_process: bool = True, post_process: bool = True, vp_stage: int | None = None):
        model = super().provide(pre_process=pre_process, post_process=post_process, vp_stage=vp_stage)
        output_layer = getattr(model, "output_layer", None)
        if output_layer is not None and self.final_logit_softcapping:
            output_layer.register_forward_hook(functools.partial(_soft_cap_logits, cap=self.final_logit_softcapping))
        return model


#: The MCore modules :func:`post_norm_layer_spec` builds from (for the families' ``requirements()``).
POST_NORM_LAYER_MODULES = frozenset({
    "megatron.core.transformer.transformer_block",
    "megatron.core.transformer.attention",
    "megatron.core.transformer.dot_product_attention",
    "megatron.core.tensor_parallel",
    "megatron.core.models.common.embeddings.rotary_pos_embedding",
})


def post_norm_layer_spec(provider: Gemma2ModelProvider):
    """MCore's local layer spec with a zero-centred norm after ``linear_proj`` and ``linear_fc2``, the
    soft-capped core attention, and the local-RoPE attention, as ``provider`` asks."""
    from bridge.models import _mcore_layers as L

    layer = copy.deepcopy(compat.local_layer_spec(**provider.layer_spec_kwargs()))
    attention = layer.submodules.self_attention
    post = L.configured(L.RowParallelLinearWithPostNorm, post_norm=ZeroCenteredRMSNorm)
    attention.submodules.linear_proj = post
    compat.spec_submodules(layer.submodules.mlp).linear_fc2 = post
    if provider.attn_logit_softcapping:
        attention.submodules.core_attention = L.configured(L.SoftCappedDotProductAttention,
                                                           softcap=float(provider.attn_logit_softcapping))
    if provider.local_rotary_base is not None:
        attention.module = L.configured(L.PerLayerRopeSelfAttention, local_layers=frozenset(provider.local_layers),
                                        local_rotary_base=float(provider.local_rotary_base))
    return layer


def gemma2_provider_kwargs(cfg: Any, *, rope: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provider fields of an HF ``Gemma2Config`` (Gemma 3 adds its own on top).

    HF scales the scores by ``query_pre_attn_scalar ** -0.5``, which becomes MCore's ``softmax_scale``
    (always set: MCore's default ``1 / math.sqrt(head_dim)`` can differ from HF's constant by an ulp).
    """
    kwargs = gemma_provider_kwargs(cfg, rope=rope)
    window = sliding_window_kwargs(cfg, kwargs["num_layers"])
    scalar = H.get(cfg, "query_pre_attn_scalar", default=kwargs["kv_channels"])
    return {
        **kwargs,
        "window_size": window.get("window_size"),
        "attn_logit_softcapping": H.get(cfg, "attn_logit_softcapping"),
        "final_logit_softcapping": H.get(cfg, "final_logit_softcapping"),
        "config_overrides": {"softmax_scale": float(scalar) ** -0.5,
                             **{k: v for k, v in window.items() if k != "window_size"}},
    }


def post_norm_mappings(*, tied: bool, prefix: str = "model") -> list[Any]:
    """The Llama table with Gemma 2's (and 3's) four layer norms: HF's ``pre_feedforward_layernorm`` is
    MCore's ``pre_mlp_layernorm``, and the two post-norms sit inside ``linear_proj`` and ``linear_fc2``."""
    m, h = "decoder.layers.*", f"{prefix}.layers.*"
    pre_ffn = f"{h}.pre_feedforward_layernorm.weight"
    return [
        *replace_rows(llama_mappings(tied=tied, prefix=prefix),
                      AutoMapping(f"{m}.pre_mlp_layernorm.weight", pre_ffn),
                      AutoMapping(f"{m}.mlp.linear_fc1.layer_norm_weight", pre_ffn)),
        AutoMapping(f"{m}.self_attention.linear_proj.post_layernorm.weight", f"{h}.post_attention_layernorm.weight"),
        AutoMapping(f"{m}.mlp.linear_fc2.post_layernorm.weight", f"{h}.post_feedforward_layernorm.weight"),
    ]
