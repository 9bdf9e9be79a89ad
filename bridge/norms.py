"""An RMSNorm module MCore's local spec can build, for releases whose local spec lacks one.

Before 0.10, ``get_gpt_layer_local_spec`` had no ``normalization`` argument and its
torch norm wrapper refused RMSNorm. :func:`use_rmsnorm` returns a copy of a layer
spec whose norm submodules build :class:`TorchRMSNorm` instead: a spec change
through MCore's own ``ModuleSpec`` mechanism, not a patch.
"""

from __future__ import annotations

import copy

import torch

__all__ = ["TorchRMSNorm", "use_rmsnorm"]


class TorchRMSNorm(torch.nn.RMSNorm):
    """``torch.nn.RMSNorm`` with the constructor MCore calls: ``(config, hidden_size, eps)``."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, **_: object) -> None:
        super().__init__(hidden_size, eps=eps, dtype=getattr(config, "params_dtype", None))


def use_rmsnorm(spec):
    """Copy of ``spec`` with every layer-norm submodule building :class:`TorchRMSNorm`."""
    spec = copy.deepcopy(spec)
    sub = spec.submodules
    for name in ("input_layernorm", "pre_mlp_layernorm", "pre_cross_attn_layernorm"):
        if getattr(sub, name, None) is not None and getattr(sub, name) is not torch.nn.Identity:
            from megatron.core.transformer.identity_op import IdentityOp

            if getattr(sub, name) is not IdentityOp:
                setattr(sub, name, TorchRMSNorm)
    return spec
