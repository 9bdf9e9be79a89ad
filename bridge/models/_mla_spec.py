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
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from bridge.errors import ConfigError

__all__ = ["local_mla_core_attention", "with_local_mla_attention"]


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


def _layer(spec: Any, core: type) -> Any:
    from megatron.core.transformer.multi_latent_attention import MLASelfAttention

    attn = spec.submodules.self_attention
    if attn.module is not MLASelfAttention:
        return spec
    attn = dataclasses.replace(attn, submodules=dataclasses.replace(attn.submodules, core_attention=core))
    return dataclasses.replace(spec, submodules=dataclasses.replace(spec.submodules, self_attention=attn))


def with_local_mla_attention(spec: Any) -> Any:
    """``spec`` (a layer ``ModuleSpec`` or a ``TransformerBlockSubmodules``) with the adapter in its MLA layers."""
    core = local_mla_core_attention()
    if hasattr(spec, "layer_specs"):
        return dataclasses.replace(spec, layer_specs=[_layer(s, core) for s in spec.layer_specs])
    return _layer(spec, core)
