"""Mistral provider: a Llama with sliding-window attention on every layer.

How HF's ``sliding_window`` becomes MCore's ``window_size`` (they differ by one) is in
:mod:`bridge.models._window`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.models._llama_like import LlamaModelProvider, llama_provider_kwargs
from bridge.models._window import with_sliding_window

__all__ = ["MistralModelProvider", "mistral_provider"]


@dataclass
class MistralModelProvider(LlamaModelProvider):
    """Mistral defaults: Llama's, with ``window_size`` set from the HF ``sliding_window``."""


def mistral_provider(cfg: Any) -> MistralModelProvider:
    """The provider of an HF ``MistralConfig``."""
    return with_sliding_window(MistralModelProvider(**llama_provider_kwargs(cfg)), cfg)
