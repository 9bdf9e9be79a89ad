"""Gemma (v1) provider: zero-centred RMSNorm, scaled embeddings, GeGLU (tanh), tied embeddings.

Two Gemma features need more than ``TransformerConfig`` fields on megatron-core 0.16.1:

* **RMSNorm with ``(1 + weight)``.** HF stores Gemma's norm weights centred on zero; for the local
  spec :class:`GemmaModelProvider` builds a block spec whose norms are
  :class:`bridge.models._norms.ZeroCenteredRMSNorm` (see :mod:`bridge.models._norms` for why).
* **Embeddings multiplied by ``sqrt(hidden_size)``.** ``GPTModel`` has no option for it (no
  embedding-scale field or argument exists in 0.16.1). :meth:`GemmaModelProvider.provide` registers a
  forward hook (``torch.nn.Module.register_forward_hook``, public torch API on the built instance;
  MCore's code is untouched) on ``model.embedding`` that multiplies its output by
  ``sqrt(hidden_size)`` rounded to the parameter dtype, as HF does.

Gemma 2 (attention/final logit soft-capping, post-attention and post-MLP norms) is not supported:
MCore's local GPT layer has neither.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._common import decoder_provider_kwargs
from bridge.models._norms import zero_centered_block_spec
from bridge.providers import GPTModelProvider

__all__ = ["GemmaModelProvider", "gemma_provider_kwargs"]

# HF activation names that mean GELU with the tanh approximation for Gemma (transformers maps the
# legacy ``hidden_act="gelu"`` of the original releases to the tanh form, see GemmaConfig).
_TANH_GELU = {"gelu_pytorch_tanh", "gelu_tanh", "gelu_new", "gelu"}


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
