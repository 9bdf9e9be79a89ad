"""Gemma (v1) provider: zero-centred RMSNorm, scaled embeddings, GeGLU (tanh), tied embeddings.

The provider is shared with Gemma 2 and 3, so it lives in :mod:`bridge.models._gemma_like` (which
says how the norm and the embedding scale are built); this module names it as the family's own.
"""

from __future__ import annotations

from bridge.models._gemma_like import GemmaModelProvider, gemma_provider_kwargs

__all__ = ["GemmaModelProvider", "gemma_provider_kwargs"]
