"""OLMoE's QK norm on MCore's local layer spec: RMSNorm over the whole query (key) projection.

HF's OLMoE normalises ``q_proj(x)`` (``num_heads * head_dim`` wide) and ``k_proj(x)`` before splitting
them into heads; MCore's ``qk_layernorm`` normalises each head (``head_dim`` wide), and no
``TransformerConfig`` field changes that (0.16). MCore calls ``q_layernorm(query)`` on the
``[s, b, heads, head_dim]`` query of its rank, built from the spec with ``hidden_size=head_dim``: the
spec is MCore's extension point, so :func:`with_whole_projection_qk_norm` puts a norm there that
flattens the heads, normalises over all of them and restores the shape. With TP > 1 a rank holds only
some heads, so the provider refuses TP > 1. No MCore code is changed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

__all__ = ["WholeProjectionRMSNorm", "with_whole_projection_qk_norm"]


class WholeProjectionRMSNorm(torch.nn.Module):
    """RMSNorm over ``heads * head_dim`` of a ``[..., heads, head_dim]`` input, as HF's ``OlmoeRMSNorm``
    (in float32, weight applied after casting back); ``heads`` is ``"query"`` or ``"key"``."""

    def __init__(self, config: Any, hidden_size: int, eps: float = 1e-5, *, heads: str = "query") -> None:
        super().__init__()
        count = config.num_attention_heads if heads == "query" else config.num_query_groups
        self.weight = torch.nn.Parameter(torch.ones(count * hidden_size, dtype=config.params_dtype))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(*x.shape[:-2], -1)
        dtype = flat.dtype
        flat = flat.to(torch.float32)
        flat = flat * torch.rsqrt(flat.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * flat.to(dtype)).reshape(x.shape)


def _edit_layer(layer: Any) -> None:
    """Put whole-projection QK norms into ``layer`` (a layer spec of an :func:`edit_layers` copy)."""
    attn = layer.submodules.self_attention
    norms = {name: dataclasses.replace(_as_spec(getattr(attn.submodules, name)), module=WholeProjectionRMSNorm,
                                       params={"heads": heads})
             for name, heads in (("q_layernorm", "query"), ("k_layernorm", "key"))}
    submodules = dataclasses.replace(attn.submodules, **norms)
    layer.submodules.self_attention = dataclasses.replace(attn, submodules=submodules)


def _as_spec(module: Any) -> Any:
    from megatron.core.transformer.spec_utils import ModuleSpec

    return module if isinstance(module, ModuleSpec) else ModuleSpec(module=module)


def with_whole_projection_qk_norm(spec: Any) -> Any:
    """``spec`` (a layer ``ModuleSpec``, a block ``ModuleSpec`` as releases before 0.12 give MoE families, or a
    ``TransformerBlockSubmodules``) with whole-projection QK norms; ``spec`` itself is not changed."""
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

    from bridge.models._mcore_layers import edit_layers

    if isinstance(spec, TransformerBlockSubmodules):
        return dataclasses.replace(spec, layer_specs=[edit_layers(s, _edit_layer) for s in spec.layer_specs])
    return edit_layers(spec, _edit_layer)
