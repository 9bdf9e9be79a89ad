"""MLA on MCore's local (non-Transformer-Engine) spec.

MCore 0.16's ``MultiLatentAttention`` builds its core attention with ``k_channels`` and
``v_channels`` (query/key and value head sizes differ in MLA); only Transformer Engine's
``TEDotProductAttention`` accepts them, the local ``DotProductAttention`` raises
``TypeError: unexpected keyword argument 'k_channels'``. The local attention itself is
head-size agnostic (``softmax_scale`` is passed in, scores come from the tensors' shapes)
except for the output view, which uses ``kv_channels``: with ``kv_channels = v_head_dim``
(set by the provider) it is exact. :func:`local_mla_core_attention` (``LocalMLACoreAttention``) accepts and checks the two
arguments, and :func:`with_local_mla_attention` puts it into an MLA layer (or block) spec.
It is used only where :func:`bridge.compat.has_feature` reports that the installed local
attention lacks them (feature ``local_attention_head_sizes``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.errors import ConfigError

__all__ = ["local_mla_core_attention", "with_local_mla_attention"]


def _core_attention_base() -> type:
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    return DotProductAttention


def _make_class() -> type:
    base = _core_attention_base()

    class LocalMLACoreAttention(base):  # type: ignore[misc, valid-type]
        """Local ``DotProductAttention`` that takes MLA's ``k_channels``/``v_channels``."""

        def __init__(self, config: Any, *args: Any, k_channels: int | None = None,
                     v_channels: int | None = None, **kwargs: Any) -> None:
            if v_channels is not None and config.kv_channels != v_channels:
                raise ConfigError(
                    f"local MLA attention reshapes its output with kv_channels; expected kv_channels == "
                    f"v_head_dim ({v_channels}), found {config.kv_channels}. Set provider.kv_channels = v_head_dim"
                )
            super().__init__(config, *args, **kwargs)

    return LocalMLACoreAttention


_CLASS: type | None = None


def local_mla_core_attention() -> type:
    """The adapter class (built on first use, so importing this module does not import megatron)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_class()
    return _CLASS


def _layer(spec: Any, core: type) -> Any:
    from megatron.core.transformer.multi_latent_attention import MLASelfAttention

    attn = spec.submodules.self_attention
    if attn.module is not MLASelfAttention:
        return spec
    new_attn = dataclasses.replace(attn, submodules=dataclasses.replace(attn.submodules, core_attention=core))
    return dataclasses.replace(spec, submodules=dataclasses.replace(spec.submodules, self_attention=new_attn))


def with_local_mla_attention(spec: Any) -> Any:
    """``spec`` (a layer ``ModuleSpec`` or ``TransformerBlockSubmodules``) with the adapter in its MLA layers."""
    core = local_mla_core_attention()
    if hasattr(spec, "layer_specs"):
        return dataclasses.replace(spec, layer_specs=[_layer(s, core) for s in spec.layer_specs])
    return _layer(spec, core)
