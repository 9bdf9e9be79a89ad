"""What the HF decoder families share: mapping rows of the common layout, and provider fields.

HF's decoder-only models (Llama and those derived from it, DeepSeek-V3) name their embedding,
norms and SwiGLU MLP the same way under a ``prefix`` (``model``); the rows here map them once.
A family's table lists these rows plus its own attention and MLP rows. Order matters where two
Megatron names read one HF tensor (MCore's local norms and Transformer Engine's fused ones): the
local row comes first, so the HF -> Megatron direction picks the local spec's name.
"""

from __future__ import annotations

from typing import Any

from packaging.version import Version

from bridge import compat
from bridge.errors import MappingError, UnsupportedFeatureError
from bridge.mappings import AutoMapping, GatedMLPMapping
from bridge.models import hf_config as H

__all__ = [
    "decoder_provider_kwargs",
    "embedding_and_norm_mappings",
    "gated_mlp_mappings",
    "layernorm_bias_mappings",
    "output_mapping",
    "replace_rows",
    "require_features",
    "te_fused_norm_mappings",
    "tiny_decoder",
]


def _norm_rows(p: str, param: str) -> list[Any]:
    """The final norm's and each layer's two norms' ``param`` (``weight``/``bias``), MCore's local-spec names."""
    return [
        AutoMapping(f"decoder.final_layernorm.{param}", f"{p}.norm.{param}"),
        AutoMapping(f"decoder.layers.*.input_layernorm.{param}", f"{p}.layers.*.input_layernorm.{param}"),
        AutoMapping(f"decoder.layers.*.pre_mlp_layernorm.{param}", f"{p}.layers.*.post_attention_layernorm.{param}"),
    ]


def _te_fused_norm_rows(p: str, param: str) -> list[Any]:
    """Each layer's two norms' ``param`` under Transformer Engine's names (fused into the next linear)."""
    return [
        AutoMapping(f"decoder.layers.*.self_attention.linear_qkv.layer_norm_{param}",
                    f"{p}.layers.*.input_layernorm.{param}"),
        AutoMapping(f"decoder.layers.*.mlp.linear_fc1.layer_norm_{param}",
                    f"{p}.layers.*.post_attention_layernorm.{param}"),
    ]


def embedding_and_norm_mappings(*, prefix: str = "model") -> list[Any]:
    """Word embedding, final norm, and each layer's two norms (MCore's local-spec names)."""
    return [AutoMapping("embedding.word_embeddings.weight", f"{prefix}.embed_tokens.weight"),
            *_norm_rows(prefix, "weight")]


def te_fused_norm_mappings(*, prefix: str = "model") -> list[Any]:
    """The same two layer norms under Transformer Engine's names (fused into the next linear)."""
    return _te_fused_norm_rows(prefix, "weight")


def layernorm_bias_mappings(*, prefix: str = "model") -> list[Any]:
    """The biases of LayerNorm (not RMSNorm) families' norms, under both MCore namings."""
    return [*_norm_rows(prefix, "bias"), *_te_fused_norm_rows(prefix, "bias")]


def gated_mlp_mappings(*, prefix: str = "model") -> list[Any]:
    """A dense SwiGLU MLP: ``gate_proj``/``up_proj`` -> ``linear_fc1``, ``down_proj`` -> ``linear_fc2``."""
    p = prefix
    return [
        GatedMLPMapping("decoder.layers.*.mlp.linear_fc1.weight",
                        gate=f"{p}.layers.*.mlp.gate_proj.weight", up=f"{p}.layers.*.mlp.up_proj.weight"),
        AutoMapping("decoder.layers.*.mlp.linear_fc2.weight", f"{p}.layers.*.mlp.down_proj.weight"),
    ]


def output_mapping(*, tied: bool, prefix: str = "model") -> AutoMapping:
    """The output layer: ``lm_head``, or, tied, the word embedding (read on import, never exported).

    With tied weights and PP > 1 the last stage holds its own output-layer copy, filled from the
    embedding.
    """
    return AutoMapping("output_layer.weight", f"{prefix}.embed_tokens.weight" if tied else "lm_head.weight",
                       export=not tied)


def replace_rows(table: list[Any], *rows: Any) -> list[Any]:
    """``table`` with each of ``rows`` in place of the row of the same Megatron name (a family whose
    HF layout differs from a shared table in a few tensors, e.g. Phi-3's fused ``qkv_proj``).

    A row that replaces nothing is an error: appending belongs to the caller, and a typo would
    otherwise add a second, unused row.
    """
    by_name = {row.megatron_param: row for row in rows}
    missing = sorted(set(by_name) - {row.megatron_param for row in table})
    if missing:
        raise MappingError(f"replace_rows: no row of the table has the Megatron name(s) {missing}; append them instead")
    return [by_name.get(row.megatron_param, row) for row in table]


def decoder_provider_kwargs(cfg: Any, *, seq_length: int = 2048, tied: bool = False) -> dict[str, Any]:
    """Provider fields every HF decoder config states the same way.

    ``seq_length`` and ``tied`` are the family's defaults for a config without
    ``max_position_embeddings`` / ``tie_word_embeddings``.
    """
    heads = cfg.num_attention_heads
    return dict(
        num_layers=cfg.num_hidden_layers,
        hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.intermediate_size,
        num_attention_heads=heads,
        num_query_groups=H.get(cfg, "num_key_value_heads", default=heads),
        kv_channels=H.get(cfg, "head_dim", default=cfg.hidden_size // heads),
        vocab_size=cfg.vocab_size,
        seq_length=H.get(cfg, "max_position_embeddings", default=seq_length),
        layernorm_epsilon=H.get(cfg, "rms_norm_eps", default=1e-6),
        share_embeddings_and_output_weights=bool(H.get(cfg, "tie_word_embeddings", default=tied)),
        init_method_std=H.get(cfg, "initializer_range", default=0.02),
        params_dtype=H.torch_dtype(cfg),
    )


def tiny_decoder(**overrides: Any) -> dict[str, Any]:
    """The small HF decoder config fields the families' ``representative_configs`` start from."""
    return {
        **dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096),
        **overrides,
    }  # fmt: skip


def require_features(family: str, needs: dict[str, str], *, fields: tuple[str, ...] = ()) -> None:
    """Raise :class:`UnsupportedFeatureError` naming each :mod:`bridge.compat` feature of ``needs`` (feature -> what
    ``family`` uses it for) that the installed megatron-core lacks, and the release that brings them: the newest
    first release of the ``TransformerConfig`` ``fields`` behind them (per the field history)."""
    missing = [f for f in needs if not compat.has_feature(f)]
    if not missing:
        return
    known = compat.field_history()["fields"]  # a field the history does not know names no release
    first = max((known[n]["first"] for n in fields if known.get(n, {}).get("first")), key=Version, default=None)
    raise UnsupportedFeatureError(
        f"{family} needs {'; '.join(needs[f] for f in missing)}, which megatron-core {compat.installed_version()} "
        f"lacks (features {missing}). "
        + (f"They arrived in megatron-core {first}: pip install 'megatron-core>={first}'" if first else
           "Upgrade megatron-core.")
    )
