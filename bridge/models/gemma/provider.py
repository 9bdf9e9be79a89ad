"""Gemma (v1) provider: zero-centred RMSNorm, scaled embeddings, GeGLU (tanh), tied embeddings.

Two Gemma features need more than ``TransformerConfig`` fields on megatron-core 0.16.1:

* **RMSNorm with ``(1 + weight)``.** HF stores Gemma's norm weights centred on zero; MCore's name for
  that is ``layernorm_zero_centered_gamma=True``, which Transformer Engine's and Apex's norms honour.
  The local (pure PyTorch) spec builds every RMSNorm as ``WrappedTorchNorm``, which *asserts*
  ``not config.layernorm_zero_centered_gamma``. Converting the weights to ``1 + w`` instead would
  break the bit-exact round trip (``(1 + w) - 1 != w`` in floating point). So, for the local spec,
  :class:`GemmaModelProvider` builds a *block* spec (MCore's ``TransformerBlockSubmodules``) whose
  norms are :class:`ZeroCenteredRMSNorm`, computing exactly what HF's ``GemmaRMSNorm`` computes.
* **Embeddings multiplied by ``sqrt(hidden_size)``.** ``GPTModel`` has no option for it (no
  embedding-scale field or argument exists in 0.16.1). :meth:`GemmaModelProvider.provide` registers a
  forward hook (``torch.nn.Module.register_forward_hook``, public torch API on the built instance;
  MCore's code is untouched) on ``model.embedding`` that multiplies its output by
  ``sqrt(hidden_size)`` rounded to the parameter dtype, as HF does.

Gemma 2 (attention/final logit soft-capping, post-attention and post-MLP norms) is not supported:
MCore's local GPT layer has neither.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from bridge import compat
from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._common import decoder_provider_kwargs
from bridge.providers import GPTModelProvider

__all__ = ["GemmaModelProvider", "ZeroCenteredRMSNorm", "gemma_provider_kwargs", "zero_centered_block_spec"]

# HF activation names that mean GELU with the tanh approximation for Gemma (transformers maps the
# legacy ``hidden_act="gelu"`` of the original releases to the tanh form, see GemmaConfig).
_TANH_GELU = {"gelu_pytorch_tanh", "gelu_tanh", "gelu_new", "gelu"}


class ZeroCenteredRMSNorm(torch.nn.Module):
    """RMSNorm with a zero-centred weight: ``x / rms(x) * (1 + weight)``, computed in fp32 then cast
    back, in the order of HF's ``GemmaRMSNorm``. Built by MCore's spec as ``(config, hidden_size, eps)``."""

    def __init__(self, config: Any, hidden_size: int, eps: float = 1e-6, **_: object) -> None:
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.zeros(hidden_size, dtype=config.params_dtype))
        # Same marker as MCore's own norms: gradients are all-reduced across the SP group.
        setattr(self.weight, "sequence_parallel", bool(getattr(config, "sequence_parallel", False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * (1.0 + self.weight.float())).type_as(x)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}, zero_centered_gamma=True"


def zero_centered_block_spec(provider: GPTModelProvider):
    """MCore's local GPT spec as a block spec whose norms (layer, QK and final) are zero-centred.

    Needs the model-parallel state (the layer count is this pipeline stage's); call it while building.
    """
    from megatron.core.transformer.identity_op import IdentityOp
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_block import (
        TransformerBlock,
        TransformerBlockSubmodules,
        get_num_layers_to_build,
    )

    layer = copy.deepcopy(compat.local_layer_spec(**provider.layer_spec_kwargs()))
    sub = layer.submodules
    for name in ("input_layernorm", "pre_mlp_layernorm"):
        setattr(sub, name, ZeroCenteredRMSNorm)
    attention = sub.self_attention.submodules
    for name in ("q_layernorm", "k_layernorm"):
        if getattr(attention, name, IdentityOp) not in (IdentityOp, None):
            setattr(attention, name, ZeroCenteredRMSNorm)
    count = get_num_layers_to_build(provider.transformer_config())
    return ModuleSpec(
        module=TransformerBlock,
        submodules=TransformerBlockSubmodules(layer_specs=[layer] * count, layer_norm=ZeroCenteredRMSNorm),
    )


def _scale_output(module: torch.nn.Module, inputs: Any, output: torch.Tensor, *, scale: float) -> torch.Tensor:
    # HF: ``embeds * torch.tensor(hidden_size ** 0.5).to(dtype)`` (fp32 constant, then rounded).
    return output * torch.tensor(scale, dtype=torch.float32, device=output.device).to(output.dtype)


@dataclass
class GemmaModelProvider(GPTModelProvider):
    """Gemma defaults; see the module docstring for the norm and the embedding scale."""

    normalization: str = "RMSNorm"
    layernorm_zero_centered_gamma: bool = True
    gated_linear_unit: bool = True
    activation: str = "gelu_tanh"
    position_embedding_type: str = "rope"
    add_bias_linear: bool = False
    share_embeddings_and_output_weights: bool = True

    @property
    def embedding_multiplier(self) -> float:
        """What the word embeddings are multiplied by: ``sqrt(hidden_size)``."""
        return math.sqrt(self.hidden_size)

    def validate(self) -> None:
        if not self.layernorm_zero_centered_gamma or self.normalization != "RMSNorm":
            raise ConfigError(
                "Gemma's norms are RMSNorm with zero-centred weights; found normalization="
                f"{self.normalization!r}, layernorm_zero_centered_gamma={self.layernorm_zero_centered_gamma}. "
                "Leave both at their defaults."
            )
        super().validate()

    def layer_spec(self):
        if self.transformer_layer_spec is None:
            return zero_centered_block_spec(self)
        return super().layer_spec()

    def provide(self, pre_process: bool = True, post_process: bool = True, vp_stage: int | None = None):
        model = super().provide(pre_process=pre_process, post_process=post_process, vp_stage=vp_stage)
        embedding = getattr(model, "embedding", None)
        if embedding is not None:
            embedding.register_forward_hook(functools.partial(_scale_output, scale=self.embedding_multiplier))
        return model


def _activation(cfg: Any) -> str:
    # transformers 4.x reads ``hidden_activation`` when set (literally); 5.x has ``hidden_act`` only.
    explicit = H.get(cfg, "hidden_activation")
    if explicit is not None:
        names = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu"}
        if explicit not in names:
            raise ConfigError(f"expected Gemma hidden_activation in {sorted(names)}, found {explicit!r}")
        return names[explicit]
    act = H.get(cfg, "hidden_act", default="gelu_pytorch_tanh")
    if act not in _TANH_GELU:
        raise ConfigError(f"expected Gemma hidden_act in {sorted(_TANH_GELU)} (GELU, tanh form), found {act!r}")
    return "gelu_tanh"


def gemma_provider_kwargs(cfg: Any) -> dict[str, Any]:
    """Provider fields of an HF ``GemmaConfig``."""
    if H.get(cfg, "attention_bias", default=False):
        raise ConfigError(
            "attention_bias=True: MCore adds output-projection and MLP biases only together (add_bias_linear), "
            "and Gemma's MLP has none; such a checkpoint cannot be represented"
        )
    if H.get(cfg, "use_bidirectional_attention", default=False):
        raise ConfigError("use_bidirectional_attention=True: the bridge builds causal GPT models only")
    theta, scaling = H.rope_parameters(cfg)
    if scaling is not None:
        raise ConfigError(f"RoPE scaling {scaling['rope_type']!r} is not supported for Gemma; expected none")
    return {
        **decoder_provider_kwargs(cfg, seq_length=8192, tied=True),
        "activation": _activation(cfg),
        "rotary_base": theta,
    }
