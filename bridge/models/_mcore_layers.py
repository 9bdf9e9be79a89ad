"""Layer modules MCore's local GPT spec lacks, built from MCore's own classes (Gemma 2 and 3).

Imported only while a model is built (it imports megatron-core). Each class subclasses the MCore
module it extends and changes one thing; none patches MCore:

* :class:`SoftCappedDotProductAttention`: the local ``DotProductAttention`` whose scores pass through
  ``cap * tanh(scores / cap)`` before the mask and softmax (HF Gemma 2's ``attn_logit_softcapping``).
  MCore calls ``self.scale_mask_softmax(scores, mask)`` on the already-scaled scores
  (feature ``local_attention_softmax_module`` of :mod:`bridge.compat`), so the cap wraps that module.
* :class:`RowParallelLinearWithPostNorm`: a row-parallel linear (``linear_proj``, ``linear_fc2``)
  followed by a norm on its (all-reduced) output: HF's ``post_attention_layernorm`` and
  ``post_feedforward_layernorm``, applied before the residual add.
* :class:`ScaledRowParallelLinear`: a row-parallel linear whose output is multiplied by ``multiplier``
  before the residual add (Granite's ``residual_multiplier``).
* :class:`PerLayerRopeSelfAttention`: ``SelfAttention`` that, on the layers named ``local_layers``
  (1-based, global), replaces the model's rotary embedding with its own of base ``local_rotary_base``
  (Gemma 3's sliding layers), and on the layers ``nope_layers`` applies none (SmolLM3's NoPE layers);
  the other layers use the model's. Layer numbers are global, so every pipeline stage agrees.

Their settings (the cap, the norm class, the local layers) are class attributes of a subclass made
by :func:`configured`: MCore builds some submodules through ``build_module`` (spec ``params`` would
work) but calls ``core_attention`` directly with fixed arguments, so a class is the one form every
submodule slot takes.
"""

from __future__ import annotations

from typing import Any

import torch
from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
from megatron.core.tensor_parallel import RowParallelLinear
from megatron.core.transformer.attention import SelfAttention
from megatron.core.transformer.dot_product_attention import DotProductAttention

from bridge.errors import UnsupportedFeatureError

__all__ = ["PerLayerRopeSelfAttention", "RowParallelLinearWithPostNorm", "ScaledRowParallelLinear",
           "SoftCappedDotProductAttention", "configured", "edit_layers", "with_self_attention"]


def configured(cls: type, **settings: Any) -> type:
    """A subclass of ``cls`` whose class attributes are ``settings`` (each must be declared on ``cls``)."""
    unknown = sorted(k for k in settings if not hasattr(cls, k))
    assert not unknown, f"{cls.__name__} declares no {unknown}"
    return type(cls.__name__, (cls,), {**settings, "__module__": cls.__module__})


class _SoftCapThen(torch.nn.Module):
    """``inner(cap * tanh(scores / cap), ...)``, in HF's order of operations."""

    def __init__(self, inner: torch.nn.Module, cap: float) -> None:
        super().__init__()
        self.inner = inner
        self.cap = cap

    def forward(self, scores: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner(torch.tanh(scores / self.cap) * self.cap, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"cap={self.cap}"


class SoftCappedDotProductAttention(DotProductAttention):
    softcap: float = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scale_mask_softmax = _SoftCapThen(self.scale_mask_softmax, self.softcap)


class RowParallelLinearWithPostNorm(RowParallelLinear):
    post_norm: type | None = None

    def __init__(self, input_size: int, output_size: int, *args: Any, config: Any, **kwargs: Any) -> None:
        super().__init__(input_size, output_size, *args, config=config, **kwargs)
        assert self.post_norm is not None, "make the class with configured(..., post_norm=NormClass)"
        if self.bias is not None:
            raise UnsupportedFeatureError("a post-norm after a linear with a bias is not supported (the bias would "
                                          "be added after the norm); use add_bias_linear=False")
        self.post_layernorm = self.post_norm(config, output_size, eps=config.layernorm_epsilon)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any):
        out, bias = super().forward(x, *args, **kwargs)
        return self.post_layernorm(out), bias


class ScaledRowParallelLinear(RowParallelLinear):
    multiplier: float = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.bias is not None:
            raise UnsupportedFeatureError("an output multiplier after a linear with a bias is not supported; "
                                          "use add_bias_linear=False")

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any):
        out, bias = super().forward(x, *args, **kwargs)
        return out * self.multiplier, bias


class PerLayerRopeSelfAttention(SelfAttention):
    local_layers: frozenset[int] = frozenset()
    local_rotary_base: float = 10000.0
    nope_layers: frozenset[int] = frozenset()

    def __init__(self, config: Any, submodules: Any, layer_number: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, submodules, layer_number, *args, **kwargs)
        self.local_rotary = None
        if self.layer_number in self.local_layers:
            self.local_rotary = RotaryEmbedding(kv_channels=config.kv_channels, rotary_percent=1.0,
                                                rotary_base=self.local_rotary_base,
                                                use_cpu_initialization=config.use_cpu_initialization)

    def forward(self, *args: Any, rotary_pos_emb: Any = None, **kwargs: Any):
        if self.layer_number in self.nope_layers:
            rotary_pos_emb = None
        elif self.local_rotary is not None and isinstance(rotary_pos_emb, torch.Tensor):
            rotary_pos_emb = self.local_rotary(rotary_pos_emb.shape[0]).to(rotary_pos_emb.device)
        return super().forward(*args, rotary_pos_emb=rotary_pos_emb, **kwargs)


def edit_layers(spec: Any, edit: Any) -> Any:
    """A copy of ``spec`` (a layer spec, or a block spec of layer specs) with ``edit(layer_spec)`` applied
    to each layer spec (releases before 0.10 give RMSNorm families a block spec, see :mod:`bridge.compat`)."""
    import copy

    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

    spec = copy.deepcopy(spec)
    layers = spec.submodules.layer_specs if isinstance(spec.submodules, TransformerBlockSubmodules) else [spec]
    for layer in {id(layer): layer for layer in layers}.values():
        edit(layer)
    return spec


def with_self_attention(spec: Any, module: type) -> Any:
    """A copy of ``spec`` (a layer spec, or a block spec of layer specs) whose self-attention is ``module``."""

    def edit(layer: Any) -> None:
        layer.submodules.self_attention.module = module

    return edit_layers(spec, edit)
