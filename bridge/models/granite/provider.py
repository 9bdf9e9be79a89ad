"""Granite provider: a Llama with four multipliers. ``attention_multiplier`` is the softmax scale
(``softmax_scale``); ``residual_multiplier`` scales ``linear_proj``'s and ``linear_fc2``'s outputs before
the residual add (:class:`bridge.models._mcore_layers.ScaledRowParallelLinear`); the embedding
multiplier and the logit divisor are forward hooks on the built ``embedding`` and ``output_layer``."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from bridge import compat
from bridge.models import hf_config as H
from bridge.models._llama_like import LlamaModelProvider, llama_provider_kwargs

__all__ = ["GraniteModelProvider", "granite_provider_kwargs"]


def _times(module: Any, inputs: Any, output: Any, *, by: float) -> Any:
    return output * by  # HF: ``inputs_embeds * embedding_multiplier`` (a Python float)


def _logits_over(module: Any, inputs: Any, output: Any, *, by: float) -> Any:
    logits, bias = output  # output_layer returns (logits, bias); HF: ``logits / logits_scaling``
    return logits / by, bias


@dataclass
class GraniteModelProvider(LlamaModelProvider):
    embedding_multiplier: float = 1.0
    residual_multiplier: float = 1.0
    logits_scaling: float = 1.0

    def layer_spec(self):
        spec = super().layer_spec()
        if self.transformer_layer_spec is not None or self.residual_multiplier == 1.0:
            return spec
        from bridge.models import _mcore_layers as L

        scaled = L.configured(L.ScaledRowParallelLinear, multiplier=self.residual_multiplier)

        def edit(layer: Any) -> None:
            layer.submodules.self_attention.submodules.linear_proj = scaled
            compat.spec_submodules(layer.submodules.mlp).linear_fc2 = scaled

        return L.edit_layers(spec, edit)

    def provide(self, pre_process: bool = True, post_process: bool = True, vp_stage: int | None = None):
        model = super().provide(pre_process=pre_process, post_process=post_process, vp_stage=vp_stage)
        for name, hook, value in (("embedding", _times, self.embedding_multiplier),
                                  ("output_layer", _logits_over, self.logits_scaling)):
            if getattr(model, name, None) is not None and value != 1.0:
                getattr(model, name).register_forward_hook(functools.partial(hook, by=value))
        return model


def granite_provider_kwargs(cfg: Any) -> dict[str, Any]:
    """Provider fields of an HF ``GraniteConfig``."""
    return {
        **llama_provider_kwargs(cfg),
        **{k: float(H.get(cfg, k, default=1.0)) for k in ("embedding_multiplier", "residual_multiplier",
                                                           "logits_scaling")},
        "config_overrides": {"softmax_scale": float(H.get(cfg, "attention_multiplier", default=1.0))},
    }
