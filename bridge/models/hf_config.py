"""Reading HF configs the same way across transformers 4.x and 5.x (one place)."""

from __future__ import annotations

from typing import Any

import torch

from bridge.errors import ConfigError

__all__ = ["get", "rope_parameters", "torch_dtype"]


def get(cfg: Any, *names: str, default: Any = None) -> Any:
    """The first attribute (or dict key) of ``names`` that ``cfg`` has and is not None."""
    for name in names:
        value = cfg.get(name) if isinstance(cfg, dict) else getattr(cfg, name, None)
        if value is not None:
            return value
    return default


def rope_parameters(cfg: Any) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, scaling)``: scaling is None for plain RoPE, else the HF scaling dict."""
    params = get(cfg, "rope_parameters") or {}
    legacy = get(cfg, "rope_scaling") or {}
    theta = params.get("rope_theta", get(cfg, "rope_theta", default=10000.0))
    scaling = {**legacy, **params}
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type in (None, "default"):
        return float(theta), None
    return float(theta), {**scaling, "rope_type": rope_type}


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _dtype_field(cfg: Any) -> Any:
    """The config's dtype without touching a deprecated attribute.

    transformers 4.56+ names it ``dtype`` and turned ``torch_dtype`` into a property that logs
    "`torch_dtype` is deprecated! Use `dtype` instead!" on every read (once per process); releases before
    4.56 (the project allows 4.45+) store only ``torch_dtype``; a ``config.json`` dict may hold either. Both
    are read from the object's own attributes, never through the property.
    """
    if isinstance(cfg, dict):
        return get(cfg, "dtype", "torch_dtype")
    stored = vars(cfg) if hasattr(cfg, "__dict__") else {}
    for name in ("dtype", "torch_dtype"):
        if stored.get(name) is not None:
            return stored[name]
    return None


def torch_dtype(cfg: Any, default: torch.dtype | None = torch.float32) -> torch.dtype | None:
    """The config's parameter dtype (``dtype``, or ``torch_dtype`` before transformers 4.56); ``default`` if unset."""
    value = _dtype_field(cfg)
    if value is None:
        return default
    if isinstance(value, torch.dtype):
        return value
    name = str(value).removeprefix("torch.")
    if name not in _DTYPES:
        raise ConfigError(f"config dtype {value!r} is not supported; expected one of {sorted(_DTYPES)}")
    return _DTYPES[name]
