"""HF's sliding-window attention as MCore fields (Mistral, Qwen2, Qwen3, Qwen3-MoE, Gemma 2/3, ...).

HF's window and MCore's differ by one. HF (``masking_utils.sliding_window_overlay``) lets query
``i`` see key ``j`` when ``i - sliding_window < j <= i``: ``sliding_window`` tokens, itself
included. MCore's ``window_size=(left, right)`` (``transformer.utils.get_sliding_window_causal_mask``,
used by the local ``DotProductAttention`` through ``FusedScaleMaskSoftmax``; the same convention
as FlashAttention's and Transformer Engine's) lets ``i`` see ``j`` when
``i - left <= j <= i + right``: ``left + 1`` tokens. So ``window_size = (sliding_window - 1, 0)``.

Families with a per-layer pattern (``layer_types``) set MCore's ``window_attn_skip_freq`` to a
list, 1 for a windowed layer and 0 for a full one.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H

__all__ = ["sliding_window_kwargs", "window_layer_flags", "with_sliding_window"]

_LAYER_TYPES = {"sliding_attention": 1, "full_attention": 0}


def window_layer_flags(cfg: Any, num_layers: int) -> list[int] | None:
    """Per layer, 1 when HF applies its sliding window there, else 0; ``None`` when HF has no window.

    Reads ``use_sliding_window`` (Qwen-style switch; absent means on), then ``layer_types`` (transformers
    >= 4.53), else ``max_window_layers`` (older Qwen2/Qwen3 configs: layers from that index on are
    windowed), else every layer (Mistral).
    """
    window = H.get(cfg, "sliding_window")
    if window is None or H.get(cfg, "use_sliding_window", default=True) is False:
        return None
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"expected sliding_window to be a positive int or null, found {window!r}; fix config.json")
    layer_types = H.get(cfg, "layer_types")
    if layer_types is not None:
        unknown = sorted(set(layer_types) - set(_LAYER_TYPES))
        if unknown or len(layer_types) != num_layers:
            raise ConfigError(
                f"expected layer_types to hold {num_layers} entries from {sorted(_LAYER_TYPES)}, found "
                f"{len(layer_types)} with unknown kinds {unknown}; MCore has only full and sliding-window layers"
            )
        return [_LAYER_TYPES[t] for t in layer_types]
    first = H.get(cfg, "max_window_layers")
    if first is not None:
        return [int(i >= first) for i in range(num_layers)]
    return [1] * num_layers


def sliding_window_kwargs(cfg: Any, num_layers: int) -> dict[str, Any]:
    """Provider attributes for HF's sliding window: ``window_size`` and, when only some layers are
    windowed, ``window_attn_skip_freq`` (a TransformerConfig field set through ``config_overrides``)."""
    flags = window_layer_flags(cfg, num_layers)
    if flags is None or not any(flags):
        return {}
    out: dict[str, Any] = {"window_size": (int(H.get(cfg, "sliding_window")) - 1, 0)}
    if not all(flags):
        out["window_attn_skip_freq"] = flags
    return out


def with_sliding_window(provider: Any, cfg: Any) -> Any:
    """``provider`` with :func:`sliding_window_kwargs` of ``cfg`` set on it (for its layer count); returned."""
    for name, value in sliding_window_kwargs(cfg, provider.num_layers).items():
        setattr(provider, name, value)
    return provider
