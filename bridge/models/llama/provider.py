"""Llama provider: HF ``LlamaConfig`` -> :class:`GPTModelProvider` fields.

Llama is the layout most families share, so its provider lives in :mod:`bridge.models._llama_like`;
this module names it as the family's own.
"""

from __future__ import annotations

from bridge.models._llama_like import LlamaModelProvider, llama_provider_kwargs

__all__ = ["LlamaModelProvider", "llama_provider_kwargs"]
