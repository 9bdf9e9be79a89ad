"""Llama provider: HF ``LlamaConfig`` -> :class:`GPTModelProvider` fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._common import decoder_provider_kwargs
from bridge.providers import GPTModelProvider

__all__ = ["LlamaModelProvider", "llama_provider_kwargs"]

# MCore's Llama-3 RoPE scaling fixes these; only ``factor`` is configurable (GPTModel.rope_scaling_factor).
_MCORE_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


@dataclass
class LlamaModelProvider(GPTModelProvider):
    """Llama defaults: RMSNorm, SwiGLU, RoPE, no biases."""

    normalization: str = "RMSNorm"
    gated_linear_unit: bool = True
    activation: str = "silu"
    position_embedding_type: str = "rope"
    add_bias_linear: bool = False


def _rope_kwargs(cfg: Any) -> dict[str, Any]:
    theta, scaling = H.rope_parameters(cfg)
    out: dict[str, Any] = {"rotary_base": theta}
    if scaling is None:
        return out
    if scaling["rope_type"] == "llama3":
        bad = {k: scaling.get(k) for k, v in _MCORE_LLAMA3_ROPE.items() if float(scaling.get(k, v)) != v}
        if bad:
            raise ConfigError(
                f"MCore's Llama-3 RoPE scaling fixes {_MCORE_LLAMA3_ROPE}; this config has {bad}. "
                "Only 'factor' may differ; such a checkpoint cannot be represented exactly."
            )
        out.update(rope_scaling=True, rope_scaling_factor=float(scaling.get("factor", 8.0)))
        return out
    if scaling["rope_type"] == "linear":
        out["seq_len_interpolation_factor"] = float(scaling["factor"])
        return out
    raise ConfigError(
        f"RoPE scaling type {scaling['rope_type']!r} is not supported for this family; "
        "supported: default, linear, llama3"
    )


def llama_provider_kwargs(cfg: Any) -> dict[str, Any]:
    """Provider fields shared by Llama-like families (Llama, Mistral, Qwen2, ...)."""
    if H.get(cfg, "hidden_act", default="silu") != "silu":
        raise ConfigError(f"expected hidden_act 'silu' for a Llama-like model, found {cfg.hidden_act!r}")
    attn_bias = bool(H.get(cfg, "attention_bias", default=False))
    mlp_bias = bool(H.get(cfg, "mlp_bias", default=False))
    if attn_bias or mlp_bias:
        raise ConfigError(
            f"attention_bias={attn_bias}, mlp_bias={mlp_bias}: MCore adds output-projection and MLP biases only "
            "together (add_bias_linear); this Llama variant is not supported (Qwen2-style QKV-only bias is: "
            "use the qwen2 family)"
        )
    return {**decoder_provider_kwargs(cfg), **_rope_kwargs(cfg)}
