"""DeepSeek-V3 provider: HF ``DeepseekV3Config`` -> an MLA + MoE :class:`GPTModelProvider`.

Attention is Multi-Latent Attention (``MLATransformerConfig``, local spec with
``multi_latent_attention=True``); MLP layers are dense for the first
``first_k_dense_replace`` layers and MoE after (``moe_layer_freq`` as a 0/1 list).

==================================  =======================================================
HF                                  MCore (0.16)
==================================  =======================================================
``q_lora_rank`` (None: no q LoRA)   ``q_lora_rank`` (None: ``linear_q_proj``)
``kv_lora_rank``                    ``kv_lora_rank``
``qk_nope_head_dim``                ``qk_head_dim``
``qk_rope_head_dim``                ``qk_pos_emb_head_dim``
``v_head_dim``                      ``v_head_dim``
``rope_interleave=True``            MLA's RoPE: ``rope_utils._apply_rotary_pos_emb_bshd``
                                    de-interleaves ``(x0, x1), (x2, x3) ...`` exactly as HF's
                                    ``apply_rotary_pos_emb_interleave``; HF's
                                    ``rope_interleave=False`` has no MCore counterpart
rope ``default`` / ``yarn``         ``rope_type="rope"`` / ``"yarn"`` (+ ``rotary_scaling_factor``,
                                    ``original_max_position_embeddings``, ``beta_fast``,
                                    ``beta_slow``, ``mscale``, ``mscale_all_dim``)
sigmoid router, ``scores + bias``   ``moe_router_score_function="sigmoid"``,
for the choice only                 ``moe_router_enable_expert_bias=True`` (``router.expert_bias``)
``n_group``, ``topk_group``         ``moe_router_num_groups``, ``moe_router_group_topk``
``norm_topk_prob`` (k > 1)          always on in MCore's sigmoid routing for k > 1
``routed_scaling_factor``           ``moe_router_topk_scaling_factor``
router in float32                   ``moe_router_dtype="fp32"``
``n_shared_experts``                ``moe_shared_expert_intermediate_size`` = n x moe size
==================================  =======================================================

Not bridged: the multi-token-prediction layers (``num_nextn_predict_layers``), which HF's
``DeepseekV3ForCausalLM`` does not build either.

Parity with HF on CPU (fp32, eager; ``tests/bridge/models/test_deepseek_v3.py``, MCore 0.16.1):
max |logit diff| ~2e-6, within the 1e-5 budget. Per component on equal inputs: MLA attention
(RoPE and YaRN, with and without q LoRA) and dense MLP 0.0; router probabilities 0.0; MoE block
~1e-5 on outputs of magnitude ~30 (summation order of the weighted expert outputs). On MCore
0.16.1 without Transformer Engine this needs: the local-attention adapter in :mod:`.spec`
(``DotProductAttention`` rejects MLA's ``k_channels``), and :mod:`bridge.cpu` patches 7
(``te_general_gemm`` undefined in the router) and 8 (MLA's ``HAVE_TE`` wrongly True).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bridge import compat
from bridge._logging import get_logger
from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.models import hf_config as H
from bridge.models._common import decoder_provider_kwargs
from bridge.models._moe import MOE_COMMON_OVERRIDES, MoEModelProvider, moe_layer_pattern

__all__ = ["DeepSeekV3ModelProvider", "deepseek_v3_provider_kwargs", "mla_rope_kwargs", "sigmoid_router_kwargs"]

log = get_logger("models.deepseek_v3")

# DeepseekV3RMSNorm's default; HF's attention builds its LoRA norms without passing rms_norm_eps.
_HF_LORA_NORM_EPS = 1e-6


@dataclass
class DeepSeekV3ModelProvider(MoEModelProvider):
    """MLA attention (``MLATransformerConfig``); ``q_layernorm``/``kv_layernorm`` are the LoRA norms."""

    qk_layernorm: bool = True
    config_class: str = dataclasses.field(default="MLATransformerConfig", init=False, repr=False)

    def validate(self) -> None:
        if self.config_overrides.get("q_lora_rank") is None and not compat.has_feature("mla_plain_q_proj"):
            raise UnsupportedFeatureError(
                f"q_lora_rank=None (no query LoRA): megatron-core {compat.installed_version()} builds MLA's "
                "linear_q_proj as a fused norm+linear whenever qk_layernorm is on (it is, for kv_a_layernorm), "
                "normalising the query input where HF's q_proj does not; MCore's local spec has no such module "
                "either. Install megatron-core<0.19, or use a checkpoint with q_lora_rank set."
            )
        super().validate()

    def layer_spec(self):
        spec = super().layer_spec()
        if self.transformer_layer_spec is None and not compat.has_feature("local_attention_head_sizes"):
            from bridge.models.deepseek_v3.spec import with_local_mla_attention

            spec = with_local_mla_attention(spec)
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


def sigmoid_router_kwargs(cfg: Any, *, experts: int, topk: int) -> dict[str, Any]:
    """DeepSeek's sigmoid, bias-corrected, group-limited routing as MCore router fields."""
    norm = bool(H.get(cfg, "norm_topk_prob", default=True))
    if norm != (topk > 1):
        raise ConfigError(
            f"norm_topk_prob={norm} with num_experts_per_tok={topk}: MCore's sigmoid routing normalises the "
            "top-k weights exactly when k > 1; this combination has no MCore counterpart"
        )
    groups = int(H.get(cfg, "n_group", default=1))
    group_topk = int(H.get(cfg, "topk_group", default=groups))
    if experts % groups:
        raise ConfigError(f"n_routed_experts ({experts}) must be a multiple of n_group ({groups})")
    limited = groups > 1 and group_topk < groups
    if limited and topk // group_topk != 2:
        raise ConfigError(
            f"group-limited routing scores a group by its top-2 experts in HF but by its top "
            f"(num_experts_per_tok // topk_group) = {topk // group_topk} in MCore; they agree only when "
            f"num_experts_per_tok = 2 x topk_group, found {topk} and {group_topk}"
        )
    return {
        "moe_router_score_function": "sigmoid",
        "moe_router_enable_expert_bias": True,
        "moe_router_pre_softmax": False,
        "moe_router_num_groups": groups if limited else None,
        "moe_router_group_topk": group_topk if limited else None,
        "moe_router_topk_scaling_factor": float(H.get(cfg, "routed_scaling_factor", default=1.0)),
        "moe_router_dtype": "fp32",
    }


def deepseek_v3_provider_kwargs(cfg: Any) -> dict[str, Any]:
    """Provider fields for a DeepSeek-V3 config (see the module docstring)."""
    if H.get(cfg, "hidden_act", default="silu") != "silu":
        raise ConfigError(f"expected hidden_act 'silu' for DeepSeek-V3, found {cfg.hidden_act!r}")
    if H.get(cfg, "attention_bias", default=False):
        raise ConfigError("expected attention_bias=False for DeepSeek-V3 (MCore's MLA has no projection biases)")
    eps = float(H.get(cfg, "rms_norm_eps", default=1e-6))
    if eps != _HF_LORA_NORM_EPS:
        log.warning(
            "rms_norm_eps=%g: HF's DeepSeek-V3 builds q_a_layernorm/kv_a_layernorm with eps %g whatever "
            "rms_norm_eps says, while MCore uses layernorm_epsilon=%g for every norm; logits will differ "
            "slightly from HF", eps, _HF_LORA_NORM_EPS, eps,
        )
    heads = cfg.num_attention_heads
    num_layers = cfg.num_hidden_layers
    experts = int(H.get(cfg, "n_routed_experts", "num_local_experts"))
    topk = int(H.get(cfg, "num_experts_per_tok", default=1))
    moe_size = int(H.get(cfg, "moe_intermediate_size"))
    shared = int(H.get(cfg, "n_shared_experts", default=0))
    dense = int(H.get(cfg, "first_k_dense_replace", default=0))
    freq = moe_layer_pattern(num_layers, lambda i: i >= dense)
    overrides: dict[str, Any] = {
        **MOE_COMMON_OVERRIDES,
        **freq,
        **sigmoid_router_kwargs(cfg, experts=experts, topk=topk),
        "q_lora_rank": H.get(cfg, "q_lora_rank"),
        "kv_lora_rank": int(cfg.kv_lora_rank),
        "qk_head_dim": int(cfg.qk_nope_head_dim),
        "qk_pos_emb_head_dim": int(cfg.qk_rope_head_dim),
        "v_head_dim": int(cfg.v_head_dim),
        **mla_rope_kwargs(cfg),
    }
    return dict(
        decoder_provider_kwargs(cfg, seq_length=4096),
        num_query_groups=heads,
        # MLA ignores kv_channels except where the local attention sizes its output (see spec.py).
        kv_channels=int(cfg.v_head_dim),
        layernorm_epsilon=eps,
        rotary_base=overrides["rotary_base"],
        num_moe_experts=experts,
        moe_router_topk=topk,
        moe_ffn_hidden_size=moe_size,
        moe_shared_expert_intermediate_size=moe_size * shared if shared else None,
        config_overrides=overrides,
    )
