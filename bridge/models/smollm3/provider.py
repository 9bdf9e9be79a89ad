"""SmolLM3 provider: a Llama whose layers in ``no_rope_layers`` (0 = NoPE) apply no rotary embedding,
through :class:`bridge.models._mcore_layers.PerLayerRopeSelfAttention`; its optional sliding window
(``use_sliding_window``, per layer through ``layer_types``) maps as Mistral's does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.models import hf_config as H
from bridge.models._llama_like import LlamaModelProvider, llama_provider_kwargs
from bridge.models._window import with_sliding_window

__all__ = ["SmolLM3ModelProvider", "smollm3_provider"]


@dataclass
class SmolLM3ModelProvider(LlamaModelProvider):
    nope_layers: tuple[int, ...] = ()  # 1-based global layer numbers without RoPE

    def layer_spec(self):
        spec = super().layer_spec()
        if self.transformer_layer_spec is not None or not self.nope_layers:
            return spec
        from bridge.models import _mcore_layers as L

        return L.with_self_attention(spec, L.configured(L.PerLayerRopeSelfAttention,
                                                        nope_layers=frozenset(self.nope_layers)))


def smollm3_provider(cfg: Any) -> SmolLM3ModelProvider:
    """The provider of an HF ``SmolLM3Config``."""
    kwargs = llama_provider_kwargs(cfg)
    uses_rope = H.get(cfg, "no_rope_layers", default=[1] * kwargs["num_layers"])
    nope = tuple(i + 1 for i, r in enumerate(uses_rope) if not r)
    return with_sliding_window(SmolLM3ModelProvider(**kwargs, nope_layers=nope), cfg)
