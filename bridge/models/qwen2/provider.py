"""Qwen2 provider: a Llama with biases on the Q, K and V projections (``add_qkv_bias``).

Qwen2's attention output and MLP projections have no bias, which MCore expresses as
``add_bias_linear=False`` with ``add_qkv_bias=True``. Its optional sliding window (``use_sliding_window``,
per layer through ``layer_types``) maps as Mistral's does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.models._llama_like import LlamaModelProvider, llama_provider_kwargs
from bridge.models._window import with_sliding_window

__all__ = ["Qwen2ModelProvider", "qwen2_provider"]


@dataclass
class Qwen2ModelProvider(LlamaModelProvider):
    """Qwen2 defaults: Llama's plus QKV bias."""

    add_qkv_bias: bool = True


def qwen2_provider(cfg: Any) -> Qwen2ModelProvider:
    """The provider of an HF ``Qwen2Config``."""
    return with_sliding_window(Qwen2ModelProvider(**llama_provider_kwargs(cfg)), cfg)
