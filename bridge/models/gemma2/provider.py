"""Gemma 2 provider: Gemma's, plus post-attention and post-MLP norms, attention and final logit
soft-capping, ``query_pre_attn_scalar``, and sliding-window attention on every other layer.
The layer pieces MCore's local spec lacks are in :mod:`bridge.models._gemma_like`."""

from __future__ import annotations

from bridge.models._gemma_like import Gemma2ModelProvider, gemma2_provider_kwargs

__all__ = ["Gemma2ModelProvider", "gemma2_provider_kwargs"]
