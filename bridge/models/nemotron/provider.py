"""Nemotron provider: LayerNorm1P (zero-centred LayerNorm with bias), squared-ReLU MLP without a gate,
partial rotary (``partial_rotary_factor``, 0.5 by default). Norms: :mod:`bridge.models._norms`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._common import decoder_provider_kwargs
from bridge.models._llama_like import rope_kwargs
from bridge.models._norms import zero_centered_block_spec
from bridge.providers import GPTModelProvider

__all__ = ["NemotronModelProvider", "nemotron_provider_kwargs"]


@dataclass
class NemotronModelProvider(GPTModelProvider):
    """LayerNorm1P and an ungated squared-ReLU MLP (RoPE and no linear biases are GPTModelProvider's)."""

    normalization: str = "LayerNorm"
    layernorm_zero_centered_gamma: bool = True
    gated_linear_unit: bool = False
    activation: str = "squared_relu"

    def layer_spec(self):
        return zero_centered_block_spec(self) if self.transformer_layer_spec is None else super().layer_spec()


def nemotron_provider_kwargs(cfg: Any) -> dict[str, Any]:
    """Provider fields of an HF ``NemotronConfig``."""
    if H.get(cfg, "hidden_act", default="relu2") != "relu2":
        raise ConfigError(f"expected Nemotron hidden_act 'relu2' (squared ReLU), found {cfg.hidden_act!r}")
    if H.get(cfg, "attention_bias", default=False) or H.get(cfg, "mlp_bias", default=False):
        raise ConfigError("attention_bias/mlp_bias=True: the bridge maps no Nemotron biases (Nemotron-4 and "
                          "Minitron have none); use a checkpoint without them")
    return {**decoder_provider_kwargs(cfg), "layernorm_epsilon": H.get(cfg, "norm_eps", default=1e-5),
            **rope_kwargs(cfg)}
