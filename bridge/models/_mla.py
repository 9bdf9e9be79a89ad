"""What the DeepSeek-style MLA + MoE families share (DeepSeek-V2, V2-Lite, V3, Kimi-K2): the provider,
the MLA RoPE fields, the provider fields of a ``DeepseekV{2,3}Config``-shaped config, and the table.

==================================  =======================================================
HF                                  MCore (0.16)
==================================  =======================================================
``q_lora_rank`` (None: no q LoRA)   ``q_lora_rank`` (None: ``linear_q_proj``)
``kv_lora_rank``                    ``kv_lora_rank``
``qk_nope_head_dim``                ``qk_head_dim``
``qk_rope_head_dim``                ``qk_pos_emb_head_dim``
``v_head_dim``                      ``v_head_dim``
interleaved RoPE                    MLA's RoPE: ``rope_utils._apply_rotary_pos_emb_bshd``
                                    de-interleaves ``(x0, x1), (x2, x3) ...`` exactly as V3's
                                    ``apply_rotary_pos_emb_interleave``; V2's complex-number
                                    rotation keeps the pairs in place, a permutation of the same
                                    dims on queries and keys alike, so the scores are the same.
                                    HF's ``rope_interleave=False`` has no MCore counterpart
rope ``default`` / ``yarn``         ``rope_type="rope"`` / ``"yarn"`` (+ ``rotary_scaling_factor``,
                                    ``original_max_position_embeddings``, ``beta_fast``,
                                    ``beta_slow``, ``mscale``, ``mscale_all_dim``)
router                              the family's (:mod:`bridge.models._routing`)
``n_shared_experts``                ``moe_shared_expert_intermediate_size`` = n x moe size
``first_k_dense_replace``           ``moe_layer_freq`` (0/1 list)
==================================  =======================================================

Row layouts agree on both sides, so every MLA weight maps one to one (see :func:`mla_mappings`).
Not bridged: the multi-token-prediction layers (``num_nextn_predict_layers``), which HF's
modelling code does not build either. On MCore 0.16.1 without Transformer Engine MLA needs the
local-attention adapter of :mod:`bridge.models._mla_spec` and :mod:`bridge.cpu` patches 7 and 8.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from bridge import compat
from bridge._logging import get_logger
from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.mappings import AutoMapping, ReplicatedMapping
from bridge.models import hf_config as H
from bridge.models._common import (
    decoder_provider_kwargs,
    embedding_and_norm_mappings,
    gated_mlp_mappings,
    output_mapping,
)
from bridge.models._moe import MOE_COMMON_OVERRIDES, MoEModelProvider, moe_layer_pattern, moe_mappings

__all__ = ["MLAModelProvider", "deepseek_mappings", "deepseek_provider_kwargs", "mla_mappings", "mla_rope_kwargs"]

log = get_logger("models.mla")

# DeepseekV2/V3RMSNorm's default; HF's attention builds its LoRA norms without passing rms_norm_eps.
_HF_LORA_NORM_EPS = 1e-6


@dataclass
class MLAModelProvider(MoEModelProvider):
    """MLA attention (``MLATransformerConfig``); ``q_layernorm``/``kv_layernorm`` are the LoRA norms."""

    qk_layernorm: bool = True
    config_class: str = dataclasses.field(default="MLATransformerConfig", init=False, repr=False)

    @property
    def kv_norm_in_up_proj(self) -> bool:
        """No query LoRA on a release without the feature ``mla_plain_q_proj`` (0.19+): the KV norm is built inside
        ``linear_kv_up_proj`` and MCore's ``qk_layernorm`` is off (see :mod:`bridge.models._mla_spec`)."""
        return self.config_overrides.get("q_lora_rank") is None and not compat.has_feature("mla_plain_q_proj")

    def validate(self) -> None:
        if self.kv_norm_in_up_proj and self.transformer_layer_spec is not None:
            raise UnsupportedFeatureError(
                f"q_lora_rank=None (no query LoRA) with a custom transformer_layer_spec: megatron-core "
                f"{compat.installed_version()} builds MLA's linear_q_proj as a fused norm+linear whenever "
                "qk_layernorm is on, normalising the query input where HF's q_proj does not. Leave "
                "transformer_layer_spec unset (the bridge's local spec fuses the KV norm into linear_kv_up_proj "
                "instead), or use a checkpoint with q_lora_rank set."
            )
        super().validate()

    def transformer_config_kwargs(self) -> dict[str, Any]:
        kwargs = super().transformer_config_kwargs()
        if self.kv_norm_in_up_proj:
            kwargs["qk_layernorm"] = False  # the KV norm lives in linear_kv_up_proj; q has none without a LoRA
        return kwargs

    def layer_spec_kwargs(self) -> dict[str, Any]:
        kwargs = super().layer_spec_kwargs()
        if self.kv_norm_in_up_proj:
            kwargs["qk_layernorm"] = False
        return kwargs

    def layer_spec(self):
        spec = super().layer_spec()
        if self.transformer_layer_spec is None and not compat.has_feature("local_attention_head_sizes"):
            from bridge.models._mla_spec import with_local_mla_attention

            spec = with_local_mla_attention(spec)
        if self.transformer_layer_spec is None and self.kv_norm_in_up_proj:
            from bridge.models._mla_spec import with_kv_norm_in_up_proj

            spec = with_kv_norm_in_up_proj(spec)
        return spec


def _get_mscale_pair(scaling: dict[str, Any]) -> tuple[float, float]:
    """HF's YaRN attention factors -> MCore ``(mscale, mscale_all_dim)``.

    HF: cos/sin scale = get_mscale(f, mscale) / get_mscale(f, mscale_all_dim) when both are
    set, else get_mscale(f); softmax scale x get_mscale(f, mscale_all_dim)**2 when that is set.
    MCore: cos/sin scale = get_mscale(f, mscale) / get_mscale(f, mscale_all_dim); softmax scale
    x get_mscale(f, mscale_all_dim)**2.
    """
    if scaling.get("attention_factor") is not None:
        raise ConfigError(
            f"YaRN attention_factor={scaling['attention_factor']!r} is set explicitly; MCore derives it from "
            "mscale/mscale_all_dim and cannot take it. Remove it from rope_parameters if it equals the derived value."
        )
    mscale, all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
    if mscale and all_dim:
        return float(mscale), float(all_dim)
    if all_dim:
        raise ConfigError(
            f"YaRN with mscale_all_dim={all_dim!r} but mscale={mscale!r}: HF then scales cos/sin by "
            "get_mscale(factor) alone, which MCore's (mscale, mscale_all_dim) pair cannot express; set mscale"
        )
    return 1.0, 0.0


def mla_rope_kwargs(cfg: Any) -> dict[str, Any]:
    """MLA RoPE settings (``MLATransformerConfig`` fields) from the HF rope parameters."""
    if not H.get(cfg, "rope_interleave", default=True):
        raise ConfigError(
            "expected rope_interleave=True (DeepSeek's released layout), found False: MCore's MLA always "
            "de-interleaves the rotary dims, so a rotate-half DeepSeek checkpoint cannot be represented"
        )
    theta, scaling = H.rope_parameters(cfg)
    out: dict[str, Any] = {"rotary_base": theta, "rotary_percent": 1.0}
    if scaling is None:
        return {**out, "rope_type": "rope", "rotary_scaling_factor": 1.0, "mscale": 1.0, "mscale_all_dim": 0.0}
    if scaling["rope_type"] != "yarn":
        raise ConfigError(f"RoPE type {scaling['rope_type']!r} is not supported for MLA; supported: default, yarn")
    if scaling.get("truncate") is False:
        raise ConfigError("YaRN truncate=False is not supported: MCore rounds the correction range (truncate=True)")
    mscale, all_dim = _get_mscale_pair(scaling)
    original = scaling.get("original_max_position_embeddings")
    factor = scaling.get("factor")
    if original is None:
        raise ConfigError("YaRN needs original_max_position_embeddings in rope_parameters; found none")
    if factor is None:
        factor = H.get(cfg, "max_position_embeddings") / original
    return {
        **out,
        "rope_type": "yarn",
        "rotary_scaling_factor": float(factor),
        "original_max_position_embeddings": int(original),
        "beta_fast": float(scaling.get("beta_fast") or 32),
        "beta_slow": float(scaling.get("beta_slow") or 1),
        "mscale": mscale,
        "mscale_all_dim": all_dim,
    }


Router = Callable[..., dict[str, Any]]


def deepseek_provider_kwargs(cfg: Any, *, router: Router, family: str) -> dict[str, Any]:
    """Provider fields for a DeepSeek-shaped config; ``router(cfg, experts=, topk=)`` gives the routing
    fields (:mod:`bridge.models._routing`), ``family`` names the model in messages."""
    if H.get(cfg, "hidden_act", default="silu") != "silu":
        raise ConfigError(f"expected hidden_act 'silu' for {family}, found {cfg.hidden_act!r}")
    if H.get(cfg, "attention_bias", default=False):
        raise ConfigError(f"expected attention_bias=False for {family} (MCore's MLA has no projection biases)")
    eps = float(H.get(cfg, "rms_norm_eps", default=1e-6))
    if eps != _HF_LORA_NORM_EPS:
        log.warning(
            "rms_norm_eps=%g: HF's %s builds q_a_layernorm/kv_a_layernorm with eps %g whatever "
            "rms_norm_eps says, while MCore uses layernorm_epsilon=%g for every norm; logits will differ "
            "slightly from HF", eps, family, _HF_LORA_NORM_EPS, eps,
        )
    experts = int(H.get(cfg, "n_routed_experts", "num_local_experts"))
    topk = int(H.get(cfg, "num_experts_per_tok", default=1))
    moe_size = int(H.get(cfg, "moe_intermediate_size"))
    shared = int(H.get(cfg, "n_shared_experts", default=0))
    dense = int(H.get(cfg, "first_k_dense_replace", default=0))
    overrides: dict[str, Any] = {
        **MOE_COMMON_OVERRIDES,
        **moe_layer_pattern(cfg.num_hidden_layers, lambda i: i >= dense),
        **router(cfg, experts=experts, topk=topk),
        "q_lora_rank": H.get(cfg, "q_lora_rank"),
        "kv_lora_rank": int(cfg.kv_lora_rank),
        "qk_head_dim": int(cfg.qk_nope_head_dim),
        "qk_pos_emb_head_dim": int(cfg.qk_rope_head_dim),
        "v_head_dim": int(cfg.v_head_dim),
        **mla_rope_kwargs(cfg),
    }
    return dict(
        decoder_provider_kwargs(cfg, seq_length=4096),
        num_query_groups=cfg.num_attention_heads,
        # MLA ignores kv_channels except where the local attention sizes its output (see _mla_spec.py).
        kv_channels=int(cfg.v_head_dim),
        layernorm_epsilon=eps,
        rotary_base=overrides["rotary_base"],
        num_moe_experts=experts,
        moe_router_topk=topk,
        moe_ffn_hidden_size=moe_size,
        moe_shared_expert_intermediate_size=moe_size * shared if shared else None,
        config_overrides=overrides,
    )


def mla_mappings(*, q_lora: bool, prefix: str = "model") -> list[Any]:
    """Multi-Latent Attention rows: ``q_proj`` or ``q_a_proj``/``q_a_layernorm``/``q_b_proj``,
    ``kv_a_proj_with_mqa`` (``[c_kv; k_rope]`` rows), ``kv_a_layernorm``, ``kv_b_proj`` (per head
    ``[k_nope; v]`` rows) and ``o_proj``. In the local spec the down projections are
    ``ColumnParallelLinear`` (gathered after the matmul), so they are split by rows across TP ranks."""
    a, h = "decoder.layers.*.self_attention", f"{prefix}.layers.*.self_attn"
    if q_lora:
        q_rows: list[Any] = [
            AutoMapping(f"{a}.linear_q_down_proj.weight", f"{h}.q_a_proj.weight"),
            AutoMapping(f"{a}.q_layernorm.weight", f"{h}.q_a_layernorm.weight"),
            # Transformer Engine fuses the norm into the up projection.
            ReplicatedMapping(f"{a}.linear_q_up_proj.layer_norm_weight", f"{h}.q_a_layernorm.weight"),
            AutoMapping(f"{a}.linear_q_up_proj.weight", f"{h}.q_b_proj.weight"),
        ]
    else:
        q_rows = [AutoMapping(f"{a}.linear_q_proj.weight", f"{h}.q_proj.weight")]
    return q_rows + [
        AutoMapping(f"{a}.linear_kv_down_proj.weight", f"{h}.kv_a_proj_with_mqa.weight"),
        AutoMapping(f"{a}.kv_layernorm.weight", f"{h}.kv_a_layernorm.weight"),
        ReplicatedMapping(f"{a}.linear_kv_up_proj.layer_norm_weight", f"{h}.kv_a_layernorm.weight"),
        AutoMapping(f"{a}.linear_kv_up_proj.weight", f"{h}.kv_b_proj.weight"),
        AutoMapping(f"{a}.linear_proj.weight", f"{h}.o_proj.weight"),
    ]


def deepseek_mappings(*, tied: bool, q_lora: bool, expert_bias: bool, prefix: str = "model") -> list[Any]:
    """The whole DeepSeek table: embeddings, norms, MLA, dense MLP, MoE with shared experts (and, V3's
    sigmoid router, its ``e_score_correction_bias``)."""
    return [
        *embedding_and_norm_mappings(prefix=prefix),
        *mla_mappings(q_lora=q_lora, prefix=prefix),
        *gated_mlp_mappings(prefix=prefix),  # the first first_k_dense_replace layers
        *moe_mappings(prefix=prefix, shared_experts=True, expert_bias=expert_bias),
        output_mapping(tied=tied, prefix=prefix),
    ]
