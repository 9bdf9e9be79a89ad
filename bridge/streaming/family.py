"""What the offline conversions need from an opened HF config: the family, provider, mapping table and context;
and the ``--dtype`` table.

Kept apart from :mod:`bridge.streaming.convert` (which opens configs through :class:`bridge.auto_bridge.AutoBridge`)
so that writers below ``AutoBridge``, such as :mod:`bridge.megatron_ckpt.offline`, which ``import_ckpt`` routes to,
use them without an import cycle: they are handed an opened bridge (``open_bridge``), never import ``AutoBridge``.
"""

from __future__ import annotations

from typing import Any

import torch

from bridge.errors import ConfigError

__all__ = ["DTYPES", "family_of", "parse_dtype"]

#: ``--dtype`` choices: ``keep`` stores every tensor in the checkpoint's own dtype.
DTYPES: dict[str, torch.dtype | None] = {"keep": None, "bf16": torch.bfloat16, "fp16": torch.float16,
                                         "fp32": torch.float32}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"keep"``/``None`` -> ``None``; ``"bf16"``/``"fp16"``/``"fp32"`` or a torch dtype -> that dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise ConfigError(f"dtype {dtype!r}: expected one of {sorted(DTYPES)}") from None


def family_of(auto: Any):
    """``(family bridge, provider, mapping registry, mapping context)`` of an ``AutoBridge`` already loaded (again
    on the real transformers config if a cached one lacks something the family reads:
    :func:`bridge.config_cache.with_real_config`)."""
    from bridge.config_cache import with_real_config

    return with_real_config(auto, _family_parts)


def _family_parts(auto: Any):
    family = auto.bridge
    provider = family.provider_bridge(auto.hf_config)
    return family, provider, family.mapping_registry(provider), family.mapping_context(provider)
