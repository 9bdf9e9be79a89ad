"""The Llama layout that most HF decoders share: its provider, its mapping table, and the rows
Llama-like families add to it (QKV bias, per-head QK norms).

Families build on these (Llama, Mistral, Qwen2, Qwen3, Gemma, the MoE families); none of them
imports another family. The table lists both MCore naming schemes: the local spec's separate norms
and Transformer Engine's fused ``layer_norm_weight``; whichever the model has is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError
from bridge.mappings import AutoMapping, MegatronMappingRegistry, QKVMapping
from bridge.models import hf_config as H
from bridge.models._common import (
    decoder_provider_kwargs,
    embedding_and_norm_mappings,
    gated_mlp_mappings,
    output_mapping,
    te_fused_norm_mappings,
)
from bridge.providers import GPTModelProvider

__all__ = [
    "LlamaModelProvider",
    "llama_mappings",
    "llama_provider_kwargs",
    "llama_registry",
    "qk_norm_mappings",
    "qkv_bias_mappings",
    "rope_kwargs",
]

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


def rope_kwargs(cfg: Any) -> dict[str, Any]:
    """``rotary_base``, ``rotary_percent`` (HF ``partial_rotary_factor``: both rotate the first
    ``int(head_dim * factor)`` channels of each head) and the RoPE scaling fields MCore has: none,
    ``linear``, or Llama-3's."""
    theta, scaling = H.rope_parameters(cfg)
    out: dict[str, Any] = {"rotary_base": theta}
    partial = (H.get(cfg, "rope_parameters") or {}).get("partial_rotary_factor",
                                                        H.get(cfg, "partial_rotary_factor", default=1.0))
    if float(partial) != 1.0:
        out["rotary_percent"] = float(partial)
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
    return {**decoder_provider_kwargs(cfg), **rope_kwargs(cfg)}


def llama_mappings(*, tied: bool, prefix: str = "model") -> list[Any]:
    """The Llama-layout table: embedding, norms (both namings), separate q/k/v, o_proj, SwiGLU MLP, output."""
    a, h = "decoder.layers.*.self_attention", f"{prefix}.layers.*.self_attn"
    return [
        *embedding_and_norm_mappings(prefix=prefix),
        *te_fused_norm_mappings(prefix=prefix),
        QKVMapping(f"{a}.linear_qkv.weight", q=f"{h}.q_proj.weight", k=f"{h}.k_proj.weight", v=f"{h}.v_proj.weight"),
        AutoMapping(f"{a}.linear_proj.weight", f"{h}.o_proj.weight"),
        *gated_mlp_mappings(prefix=prefix),
        output_mapping(tied=tied, prefix=prefix),
    ]


def llama_registry(provider: GPTModelProvider, *extra: Any) -> MegatronMappingRegistry:
    """The Llama table for ``provider`` (tied or not), followed by a family's ``extra`` rows."""
    return MegatronMappingRegistry(*llama_mappings(tied=provider.share_embeddings_and_output_weights), *extra)


def qkv_bias_mappings(*, prefix: str = "model") -> list[Any]:
    """Q, K, V biases <-> ``linear_qkv.bias``, interleaved per query group like the weight."""
    h = f"{prefix}.layers.*.self_attn"
    return [
        QKVMapping("decoder.layers.*.self_attention.linear_qkv.bias",
                   q=f"{h}.q_proj.bias", k=f"{h}.k_proj.bias", v=f"{h}.v_proj.bias"),
    ]


def qk_norm_mappings(*, prefix: str = "model") -> list[Any]:
    """HF ``q_norm``/``k_norm`` (``head_dim`` wide, replicated across TP) <-> MCore's QK layernorms."""
    p = prefix
    return [
        AutoMapping("decoder.layers.*.self_attention.q_layernorm.weight", f"{p}.layers.*.self_attn.q_norm.weight"),
        AutoMapping("decoder.layers.*.self_attention.k_layernorm.weight", f"{p}.layers.*.self_attn.k_norm.weight"),
    ]
