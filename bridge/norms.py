"""An RMSNorm module MCore's local spec can build, for releases whose local spec lacks one.

Before 0.10, ``get_gpt_layer_local_spec`` had no ``normalization`` argument and its torch norm
wrapper (``WrappedTorchLayerNorm``) refused RMSNorm; so did the final norm, which ``TransformerBlock``
builds from its module-level ``LayerNormImpl`` unless given a *block* spec. :func:`use_rmsnorm` returns
a copy of a layer spec whose norm submodules (input, pre-MLP, QK) build :class:`TorchRMSNorm` instead,
and :func:`rmsnorm_block_spec` wraps it in a block spec whose final norm is a :class:`TorchRMSNorm` too:
spec changes through MCore's own ``ModuleSpec`` mechanism, not patches.
"""

from __future__ import annotations

import copy

import torch

__all__ = ["TorchRMSNorm", "rmsnorm_block_spec", "use_rmsnorm"]


class TorchRMSNorm(torch.nn.RMSNorm):
    """``torch.nn.RMSNorm`` with the constructor MCore calls: ``(config, hidden_size, eps)``."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, **_: object) -> None:
        super().__init__(hidden_size, eps=eps, dtype=getattr(config, "params_dtype", None))


def _is_norm(module: object) -> bool:
    from megatron.core.transformer.identity_op import IdentityOp

    return module is not None and module is not torch.nn.Identity and module is not IdentityOp


def use_rmsnorm(spec):
    """Copy of a layer ``spec`` with every norm submodule (layer norms, QK norms) building :class:`TorchRMSNorm`."""
    spec = copy.deepcopy(spec)
    sub = spec.submodules
    for name in ("input_layernorm", "pre_mlp_layernorm", "pre_cross_attn_layernorm"):
        if _is_norm(getattr(sub, name, None)):
            setattr(sub, name, TorchRMSNorm)
    attention = getattr(getattr(sub, "self_attention", None), "submodules", None)
    for name in ("q_layernorm", "k_layernorm"):
        if attention is not None and _is_norm(getattr(attention, name, None)):
            setattr(attention, name, TorchRMSNorm)
    return spec


def rmsnorm_block_spec(layer_spec, num_layers: int):
    """A ``TransformerBlock`` spec of ``num_layers`` copies of ``use_rmsnorm(layer_spec)`` whose final norm is
    a :class:`TorchRMSNorm` (``num_layers``: the layers this pipeline stage builds)."""
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_block import TransformerBlock, TransformerBlockSubmodules

    layer = use_rmsnorm(layer_spec)
    return ModuleSpec(module=TransformerBlock,
                      submodules=TransformerBlockSubmodules(layer_specs=[layer] * num_layers,
                                                            layer_norm=TorchRMSNorm))
