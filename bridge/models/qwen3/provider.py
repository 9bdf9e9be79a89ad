"""Qwen3 provider: a Llama with RMSNorm on each query and key head (``qk_layernorm``).

HF's ``q_norm``/``k_norm`` normalise over ``head_dim`` after the projection and before RoPE, as
MCore's ``q_layernorm``/``k_layernorm`` do (built with ``hidden_size=kv_channels``). Qwen3's
``head_dim`` is set independently of ``hidden_size / num_attention_heads`` (128 with hidden 1024 and
16 heads in Qwen3-0.6B): it becomes ``kv_channels``, and the attention projections are
``num_heads * head_dim`` wide on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.models._llama_like import LlamaModelProvider, llama_provider_kwargs
from bridge.models._window import with_sliding_window

__all__ = ["Qwen3ModelProvider", "qwen3_provider"]


@dataclass
class Qwen3ModelProvider(LlamaModelProvider):
    """Qwen3 defaults: Llama's plus per-head QK RMSNorm."""

    qk_layernorm: bool = True


def qwen3_provider(cfg: Any) -> Qwen3ModelProvider:
    """The provider of an HF ``Qwen3Config`` (``attention_bias=True`` is refused as for Llama)."""
    return with_sliding_window(Qwen3ModelProvider(**llama_provider_kwargs(cfg)), cfg)
