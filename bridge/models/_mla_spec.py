"""Multi-Latent Attention on MCore's local (non-Transformer-Engine) layer spec.

MCore 0.16's ``MultiLatentAttention`` builds its core attention with ``k_channels`` and
``v_channels`` (MLA's query/key and value heads differ in size). Only Transformer Engine's
``TEDotProductAttention`` takes them; the local ``DotProductAttention`` raises
``TypeError: unexpected keyword argument 'k_channels'``. The local attention is otherwise
head-size agnostic (MLA passes ``softmax_scale``; scores come from the tensors' shapes) except
for its output view, sized by ``kv_channels``: with ``kv_channels = v_head_dim`` (the
provider sets it) it computes exactly MLA's attention.

:func:`local_mla_core_attention` is that local attention taking (and checking) the two
arguments; :func:`with_local_mla_attention` puts it into the MLA layers of a layer or block
spec. Specs are MCore's extension point, so no MCore code is changed. The provider uses it only
where the installed release lacks the feature ``local_attention_head_sizes`` of
:mod:`bridge.compat`.

MLA without a query LoRA (DeepSeek-V2-Lite's shape) from 0.19 (``transformer/mla_qk_norm_config.py``): with
``qk_layernorm`` on, MLA's resolver demands the backend's fused norm+linear for ``linear_q_proj`` (a norm on
the query input that HF's ``q_proj`` does not have; the local backend has none, so it cannot build at all).
With ``qk_layernorm`` off it builds the spec's plain ``linear_q_proj`` and drops the KV norm, unless the
spec fuses that norm into ``linear_kv_up_proj``, which the resolver accepts. :func:`with_kv_norm_in_up_proj`
does so with :func:`local_norm_linear` (a ``ColumnParallelLinear`` normalising its input with its own
``layer_norm_weight``, Transformer Engine's name for the fused norm, where the table already maps
``kv_a_layernorm``): ``kv_b_proj(kv_a_layernorm(c_kv))`` exactly as HF and as the separate norm before 0.19.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch

from bridge.errors import ConfigError

__all__ = ["local_mla_core_attention", "local_norm_linear", "with_kv_norm_in_up_proj", "with_local_mla_attention"]


@functools.lru_cache(maxsize=1)
def local_mla_core_attention() -> type:
    """The local ``DotProductAttention`` subclass accepting ``k_channels``/``v_channels`` (built on first use)."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    class LocalMLACoreAttention(DotProductAttention):
        """Local ``DotProductAttention`` that takes MLA's ``k_channels``/``v_channels``."""

        def __init__(self, config: Any, *args: Any, k_channels: int | None = None,
                     v_channels: int | None = None, **kwargs: Any) -> None:
            if v_channels is not None and config.kv_channels != v_channels:
                raise ConfigError(
                    "the local attention sizes its output with kv_channels; expected kv_channels == v_head_dim "
                    f"({v_channels}), found {config.kv_channels}. Set kv_channels = v_head_dim on the provider."
                )
            super().__init__(config, *args, **kwargs)

    return LocalMLACoreAttention


@functools.lru_cache(maxsize=1)
def local_norm_linear() -> type:
    """A local ``ColumnParallelLinear`` with an RMSNorm on its input (parameters ``weight``, ``layer_norm_weight``)."""
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear

    class LocalRMSNormColumnParallelLinear(ColumnParallelLinear):
        """``ColumnParallelLinear(rms_norm(x) * layer_norm_weight)``: the local form of TE's fused norm+linear."""

        def __init__(self, input_size: int, output_size: int, *, config: Any, **kwargs: Any) -> None:
            if config.normalization != "RMSNorm":
                raise ConfigError(f"the fused KV norm is an RMSNorm; found normalization={config.normalization!r}")
            super().__init__(input_size, output_size, config=config, **kwargs)
            self.layer_norm_weight = torch.nn.Parameter(torch.ones(input_size, dtype=config.params_dtype))
            self.norm_eps = config.layernorm_epsilon

        def forward(self, input_: torch.Tensor, *args: Any, **kwargs: Any):
            normed = torch.nn.functional.rms_norm(input_, (input_.shape[-1],), self.layer_norm_weight, self.norm_eps)
            return super().forward(normed, *args, **kwargs)

    return LocalRMSNormColumnParallelLinear


def _layer(spec: Any, **changes: Any) -> Any:
    from megatron.core.transformer.multi_latent_attention import MLASelfAttention

    attn = spec.submodules.self_attention
    if attn.module is not MLASelfAttention:
        return spec
    attn = dataclasses.replace(attn, submodules=dataclasses.replace(attn.submodules, **changes))
    return dataclasses.replace(spec, submodules=dataclasses.replace(spec.submodules, self_attention=attn))


def _each_layer(spec: Any, **changes: Any) -> Any:
    if hasattr(spec, "layer_specs"):
        return dataclasses.replace(spec, layer_specs=[_layer(s, **changes) for s in spec.layer_specs])
    return _layer(spec, **changes)


def with_local_mla_attention(spec: Any) -> Any:
    """``spec`` (a layer ``ModuleSpec`` or a ``TransformerBlockSubmodules``) with the adapter in its MLA layers."""
    return _each_layer(spec, core_attention=local_mla_core_attention())


def with_kv_norm_in_up_proj(spec: Any) -> Any:
    """``spec``'s MLA layers with the KV norm inside ``linear_kv_up_proj`` (see the module docstring); the
    config must have ``qk_layernorm=False``."""
    from megatron.core.transformer.identity_op import IdentityOp

    return _each_layer(spec, linear_kv_up_proj=local_norm_linear(), kv_layernorm=IdentityOp)
