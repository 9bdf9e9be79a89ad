"""Gemma 3 (text) provider: Gemma 2's layer with per-head QK norms (zero-centred RMSNorm) and two RoPE
bases: the full-attention layers use the model's rotary embedding (``rope_theta``, optionally linear
scaling), the sliding layers their own (``rope_local_base_freq``, no scaling; see
:class:`bridge.models._mcore_layers.PerLayerRopeSelfAttention`)."""

from __future__ import annotations

from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._gemma_like import Gemma2ModelProvider, gemma2_provider_kwargs
from bridge.models._llama_like import rope_kwargs
from bridge.models._window import window_layer_flags

__all__ = ["gemma3_provider", "layer_type_rope"]


def layer_type_rope(cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(full, sliding)`` RoPE parameters: transformers 5 nests them per layer type, 4.x has
    ``rope_theta``, ``rope_scaling`` (full layers) and ``rope_local_base_freq``."""
    params = H.get(cfg, "rope_parameters") or {}
    if "full_attention" in params:
        return params["full_attention"], params.get("sliding_attention") or {}
    scaling = H.get(cfg, "rope_scaling") or {}
    full = {**scaling, "rope_theta": H.get(cfg, "rope_theta", default=1_000_000.0)}
    return full, {"rope_theta": H.get(cfg, "rope_local_base_freq", default=10_000.0)}


def gemma3_provider(cfg: Any) -> Gemma2ModelProvider:
    """The provider of an HF ``Gemma3TextConfig``."""
    full, sliding = layer_type_rope(cfg)
    local = rope_kwargs({"rope_parameters": sliding})
    if set(local) != {"rotary_base"}:
        raise ConfigError(f"the sliding layers' RoPE must be plain (default, full rotary); found {sliding}")
    kwargs = gemma2_provider_kwargs(cfg, rope=rope_kwargs({"rope_parameters": full}))
    flags = window_layer_flags(cfg, kwargs["num_layers"]) or []
    local_layers = tuple(i + 1 for i, windowed in enumerate(flags) if windowed)
    return Gemma2ModelProvider(**kwargs, qk_layernorm=True, local_layers=local_layers,
                               local_rotary_base=local["rotary_base"] if local_layers else None)
