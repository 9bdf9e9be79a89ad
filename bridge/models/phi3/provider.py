"""Phi-3 provider: a Llama whose sliding window (``sliding_window``, every layer) and partial rotary
(``partial_rotary_factor``, Phi-4-mini) map as the shared helpers say; LongRoPE is refused."""

from __future__ import annotations

from typing import Any

from bridge.models._llama_like import LlamaModelProvider, llama_provider_kwargs
from bridge.models._window import with_sliding_window

__all__ = ["phi3_provider"]


def phi3_provider(cfg: Any) -> LlamaModelProvider:
    """The provider of an HF ``Phi3Config`` (its fused weights are the mappings' business)."""
    return with_sliding_window(LlamaModelProvider(**llama_provider_kwargs(cfg)), cfg)
