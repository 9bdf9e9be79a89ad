"""Validation of an HF config before anything is built from it.

A ``config.json`` with ``num_attention_heads: 0`` used to end in ``ZeroDivisionError`` deep inside
``transformers`` or the build. :func:`validate_hf_config` checks a config (the ``config.json`` dict, or a
``transformers`` config object) against the rules below, all of them, and raises one
:class:`~bridge.errors.ConfigError` that names every broken rule's fields, their values and the file.

The rules are data: :data:`SIZES` (positive integers wherever a config sets them), :data:`COUNTS`
(non-negative integers), :data:`MULTIPLES` (one size a multiple of another) and :data:`AT_MOST` (one
count at most another). They use HF's field names for every family the bridge supports (TinyGPT's
own names included); a field a config does not set (absent or ``null``) is not checked, nor is a
relation whose fields are not both valid sizes.

:class:`bridge.auto_bridge.AutoBridge` calls it where every entry point passes: on the ``config.json``
dict it reads (local directories, Hub IDs, offline ``mcore-compat convert`` / ``export``), before
``transformers`` parses it, and on the config object given to ``from_hf_config``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.errors import CheckpointError, ConfigError

__all__ = ["AT_MOST", "COUNTS", "MULTIPLES", "SIZES", "Relation", "config_source", "hf_config_problems",
           "read_config_json", "validate_hf_config"]

#: Sizes: a positive integer wherever a config sets one.
SIZES: tuple[str, ...] = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings",
    # mixture of experts
    "num_experts", "num_local_experts", "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size",
    "shared_expert_intermediate_size", "n_group", "topk_group", "decoder_sparse_step",
    # multi-latent attention
    "q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim",
    # TinyGPT's names
    "num_layers", "num_heads", "num_kv_heads", "ffn_hidden_size",
)  # fmt: skip

#: Counts that may be zero (a non-negative integer wherever a config sets one; ``sliding_window: 0`` is "none").
COUNTS: tuple[str, ...] = ("n_shared_experts", "first_k_dense_replace", "max_window_layers", "sliding_window")


@dataclass(frozen=True)
class Relation:
    """``small`` relates to ``large`` (divides it, or is at most it), unless the config sets ``unless``."""

    small: str
    large: str
    why: str
    unless: str | None = None


#: ``large`` must be a multiple of ``small``.
MULTIPLES: tuple[Relation, ...] = (
    Relation("num_key_value_heads", "num_attention_heads", "each key/value head serves a whole group of query heads"),
    Relation("num_attention_heads", "hidden_size",
             "without head_dim in the config, head_dim is hidden_size / num_attention_heads", unless="head_dim"),
    Relation("n_group", "n_routed_experts", "routed experts are split into n_group equal groups"),
    Relation("num_kv_heads", "num_heads", "each key/value head serves a whole group of query heads"),
    Relation("num_heads", "hidden_size", "head_dim is hidden_size / num_heads"),
)

#: ``small`` must be at most ``large``.
AT_MOST: tuple[Relation, ...] = (
    Relation("num_experts_per_tok", "num_experts", "each token is routed to num_experts_per_tok distinct experts"),
    Relation("num_experts_per_tok", "num_local_experts",
             "each token is routed to num_experts_per_tok distinct experts"),
    Relation("num_experts_per_tok", "n_routed_experts", "each token is routed to num_experts_per_tok distinct experts"),
    Relation("topk_group", "n_group", "routing picks topk_group of the n_group expert groups"),
)


def _value(cfg: Any, name: str) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(name)
    return getattr(cfg, name, None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def hf_config_problems(cfg: Any) -> list[str]:
    """Every rule ``cfg`` breaks, one sentence each naming the fields and their values (``[]``: valid)."""
    problems: list[str] = []
    sizes: dict[str, int] = {}
    for name in SIZES:
        value = _value(cfg, name)
        if value is None:
            continue
        if _is_int(value) and value > 0:
            sizes[name] = value
        else:
            problems.append(f"{name}={value!r} must be a positive integer")
    for name in COUNTS:
        value = _value(cfg, name)
        if value is not None and not (_is_int(value) and value >= 0):
            problems.append(f"{name}={value!r} must be a non-negative integer")
    for rel in MULTIPLES:
        small, large = sizes.get(rel.small), sizes.get(rel.large)
        if small and large and (rel.unless is None or _value(cfg, rel.unless) is None) and large % small:
            problems.append(f"{rel.large}={large} must be a multiple of {rel.small}={small} ({rel.why})")
    for rel in AT_MOST:
        small, large = sizes.get(rel.small), sizes.get(rel.large)
        if small and large and small > large:
            problems.append(f"{rel.small}={small} must be at most {rel.large}={large} ({rel.why})")
    return problems


def config_source(cfg: Any) -> str:
    """Where ``cfg`` came from, for messages: its ``config.json`` when it names a directory holding one."""
    origin = _value(cfg, "_name_or_path")
    if origin:
        path = Path(str(origin)) / "config.json"
        if path.is_file():
            return str(path)
    return f"the {type(cfg).__name__} given" if not isinstance(cfg, Mapping) else "the config dict given"


def validate_hf_config(cfg: Any, *, source: str | Path | None = None) -> None:
    """Raise :class:`ConfigError` naming every broken rule of ``cfg`` and ``source`` (default: :func:`config_source`).

    Args:
        cfg: the ``config.json`` content (a dict) or a ``transformers`` config object.
        source: the file the config was read from, for the message.
    """
    problems = hf_config_problems(cfg)
    if not problems:
        return
    where = str(source) if source is not None else config_source(cfg)
    listed = "; ".join(problems)
    raise ConfigError(
        f"{where}: the HF config is invalid, nothing was built: {listed}. Fix "
        f"{'this field' if len(problems) == 1 else 'these fields'} in {where}."
    )


def read_config_json(path: Path) -> dict[str, Any]:
    """The ``config.json`` of the HF checkpoint directory ``path``, parsed and validated before any transformers
    code sees it (transformers divides by ``num_attention_heads``)."""
    cfg = path / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"expected {cfg} (an HF checkpoint directory has a config.json); found none")
    try:
        data = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg} is not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{cfg} must hold a JSON object, found {type(data).__name__}")
    validate_hf_config(data, source=cfg)
    return data

