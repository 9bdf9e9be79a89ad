"""HF's YaRN RoPE on MCore's standard attention (``position_embedding_type="yarn"``; GPT-OSS).

MCore's ``GPTModel`` (0.15+) and ``HybridModel`` build a ``YarnRotaryEmbedding`` from attributes of the
config object that are *not* ``TransformerConfig`` fields (``getattr(config, "yarn_rotary_scaling_factor")``
...), and the attention multiplies cos/sin by the concentration factor read from the same attributes. So
the provider keeps a :class:`YarnRope` and sets them on the config it builds (:func:`with_yarn`).

HF (``modeling_rope_utils._compute_yarn_parameters``) and MCore
(``models/common/embeddings/yarn_rotary_pos_embedding.py``) compute the same frequencies with the same float32
operations; the parameters map one to one:

=====================================  ==========================================================
HF ``rope_parameters``                 MCore config attribute
=====================================  ==========================================================
``factor`` (default: max_pos / orig)   ``yarn_rotary_scaling_factor``
``original_max_position_embeddings``   ``yarn_original_max_position_embeddings``
``beta_fast`` / ``beta_slow``          ``yarn_beta_fast`` / ``yarn_beta_slow`` (32 / 1 when unset)
``mscale`` and ``mscale_all_dim``      ``yarn_mscale`` / ``yarn_mscale_all_dim``: both, or neither: then
                                       ``1.0`` / ``0.0``, whose ratio is HF's default ``0.1 ln(factor) + 1``
                                       bit for bit (0.15 has no ``None`` case)
``truncate`` (default True)            ``yarn_correction_range_round_to_int``
``attention_factor``                   not settable: refused unless it equals the derived value
=====================================  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._llama_like import rope_kwargs

__all__ = ["YarnRope", "with_yarn", "yarn_or_rope_kwargs", "yarn_rope"]


@dataclass(frozen=True)
class YarnRope:
    """The YaRN settings MCore reads from the config's ``yarn_*`` attributes."""

    scaling_factor: float
    original_max_position_embeddings: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0
    mscale_all_dim: float = 0.0
    correction_range_round_to_int: bool = True

    def config_attributes(self) -> dict[str, Any]:
        return {f"yarn_{k}" if k != "scaling_factor" else "yarn_rotary_scaling_factor": v
                for k, v in vars(self).items()}


def _mscale(factor: float, m: float = 1.0) -> float:
    return 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0


def yarn_rope(cfg: Any) -> YarnRope:
    """The :class:`YarnRope` of an HF config whose RoPE scaling is ``yarn`` (see the module docstring)."""
    _, scaling = H.rope_parameters(cfg)
    if scaling is None or scaling["rope_type"] != "yarn":
        raise ConfigError(f"expected YaRN rope_parameters, found {scaling!r}")
    partial = float(scaling.get("partial_rotary_factor", H.get(cfg, "partial_rotary_factor", default=1.0)))
    if partial != 1.0:
        raise ConfigError(f"YaRN with partial_rotary_factor={partial}: MCore's YarnRotaryEmbedding rotates the "
                          "whole head (its frequencies use kv_channels), so partial rotary cannot be expressed")
    original = scaling.get("original_max_position_embeddings")
    if original is None:
        raise ConfigError("YaRN needs original_max_position_embeddings in rope_parameters; found none")
    factor = float(scaling.get("factor") or H.get(cfg, "max_position_embeddings") / original)
    mscale, all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
    both = bool(mscale and all_dim)
    derived = _mscale(factor, mscale) / _mscale(factor, all_dim) if both else _mscale(factor)
    given = scaling.get("attention_factor")
    if given is not None and float(given) != derived:
        raise ConfigError(
            f"YaRN attention_factor={given!r} differs from the value MCore derives from factor/mscale/mscale_all_dim "
            f"({derived!r}) and MCore cannot take it; such a checkpoint cannot be represented exactly"
        )
    return YarnRope(
        scaling_factor=factor,
        original_max_position_embeddings=int(original),
        beta_fast=float(scaling.get("beta_fast") or 32),
        beta_slow=float(scaling.get("beta_slow") or 1),
        mscale=float(mscale) if both else 1.0,
        mscale_all_dim=float(all_dim) if both else 0.0,
        correction_range_round_to_int=bool(scaling.get("truncate", True)),
    )


def with_yarn(config: Any, yarn: YarnRope | None) -> Any:
    """``config`` (a built ``TransformerConfig``) with the ``yarn_*`` attributes MCore reads; unchanged for None."""
    for name, value in (yarn.config_attributes() if yarn is not None else {}).items():
        setattr(config, name, value)
    return config


def yarn_or_rope_kwargs(cfg: Any) -> dict[str, Any]:
    """Provider fields for the config's RoPE: with YaRN, ``position_embedding_type="yarn"``, ``rotary_base`` and
    ``yarn`` (the :class:`YarnRope` of a provider that applies it with :func:`with_yarn`); else
    :func:`bridge.models._llama_like.rope_kwargs` and ``yarn=None``."""
    theta, scaling = H.rope_parameters(cfg)
    if scaling is None or scaling["rope_type"] != "yarn":
        return {**rope_kwargs(cfg), "yarn": None}
    return {"position_embedding_type": "yarn", "rotary_base": theta, "yarn": yarn_rope(cfg)}
