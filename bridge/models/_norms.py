"""Norms with zero-centred weights (``x_hat * (1 + weight)``), and the block spec that puts them in
MCore's local GPT layer (Gemma's RMSNorm, Nemotron's LayerNorm1P).

MCore's name for them is ``layernorm_zero_centered_gamma=True``, which Transformer Engine's and Apex's
norms honour. The local (pure PyTorch) spec builds every norm as ``WrappedTorchNorm``, which *asserts*
``not config.layernorm_zero_centered_gamma``. Storing ``1 + w`` instead would break the bit-exact
round trip (``(1 + w) - 1 != w`` in floating point). So the providers of these families build a
*block* spec (MCore's ``TransformerBlockSubmodules``) whose norms are the modules here, each
computing exactly what its HF counterpart computes.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from bridge import compat

__all__ = ["ZERO_CENTERED_NORMS", "ZeroCenteredLayerNorm", "ZeroCenteredRMSNorm", "zero_centered_block_spec"]


def _parameter(config: Any, hidden_size: int) -> torch.nn.Parameter:
    param = torch.nn.Parameter(torch.zeros(hidden_size, dtype=config.params_dtype))
    # Same marker as MCore's own norms: gradients are all-reduced across the SP group.
    setattr(param, "sequence_parallel", bool(getattr(config, "sequence_parallel", False)))
    return param


class ZeroCenteredRMSNorm(torch.nn.Module):
    """RMSNorm with a zero-centred weight: ``x / rms(x) * (1 + weight)``, computed in fp32 then cast
    back, in the order of HF's ``GemmaRMSNorm``. Built by MCore's spec as ``(config, hidden_size, eps)``."""

    def __init__(self, config: Any, hidden_size: int, eps: float = 1e-6, **_: object) -> None:
        super().__init__()
        self.eps = eps
        self.weight = _parameter(config, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * (1.0 + self.weight.float())).type_as(x)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}, zero_centered_gamma=True"


class ZeroCenteredLayerNorm(torch.nn.Module):
    """LayerNorm with a zero-centred weight and a bias: ``layer_norm(x, 1 + weight, bias)``, as HF's
    ``NemotronLayerNorm1P`` computes it (in the input's dtype)."""

    def __init__(self, config: Any, hidden_size: int, eps: float = 1e-5, **_: object) -> None:
        super().__init__()
        self.eps = eps
        self.weight = _parameter(config, hidden_size)
        self.bias = _parameter(config, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, self.weight.shape, self.weight + 1.0, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}, zero_centered_gamma=True"


#: The zero-centred module for each MCore ``normalization``.
ZERO_CENTERED_NORMS: dict[str, type[torch.nn.Module]] = {
    "RMSNorm": ZeroCenteredRMSNorm,
    "LayerNorm": ZeroCenteredLayerNorm,
}


def zero_centered_block_spec(provider: Any, layer: Any = None):
    """A block spec of ``layer`` (default: MCore's local GPT layer spec for ``provider``) whose norms
    (layer, QK and final) are zero-centred. A family with its own layer modules passes ``layer``;
    its norms are replaced too, wherever the spec names them.

    Needs the model-parallel state (the layer count is this pipeline stage's); call it while building.
    """
    from megatron.core.transformer.identity_op import IdentityOp
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_block import (
        TransformerBlock,
        TransformerBlockSubmodules,
        get_num_layers_to_build,
    )

    norm = ZERO_CENTERED_NORMS[provider.normalization]
    layer = copy.deepcopy(layer if layer is not None else compat.local_layer_spec(**provider.layer_spec_kwargs()))
    sub = layer.submodules
    for name in ("input_layernorm", "pre_mlp_layernorm"):
        setattr(sub, name, norm)
    attention = sub.self_attention.submodules
    for name in ("q_layernorm", "k_layernorm"):
        if getattr(attention, name, IdentityOp) not in (IdentityOp, None):
            setattr(attention, name, norm)
    count = get_num_layers_to_build(provider.transformer_config())
    return ModuleSpec(
        module=TransformerBlock,
        submodules=TransformerBlockSubmodules(layer_specs=[layer] * count, layer_norm=norm),
    )
