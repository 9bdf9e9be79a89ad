"""The registry of sharding kinds (data) and the one :func:`split` / :func:`merge` dispatch.

Each kind names its split and merge functions and the metadata keys they take, so a saved
layout (``layout.json``) can store ``{"kind": ..., "meta": {...}}`` per parameter and have it
validated before any tensor is touched.

======================  ==============================================  =========================
kind                    metadata                                        shards
======================  ==============================================  =========================
``column``              --                                              ``tp``
``row``                 --                                              ``tp``
``replicated``          --                                              ``tp``
``qkv``                 ``num_query_groups`` (required)                 ``tp``
``gated``               --                                              ``tp``
``vocab``               ``divisible_by`` (128), ``vocab_size``          ``tp``
                        (required to merge)
``expert``              ``ep`` (required), ``inner`` (``"column"``)     ``ep * tp``, ``e * tp + t``
======================  ==============================================  =========================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bridge.errors import ParallelLayoutError
from bridge.parallel import expert as _expert
from bridge.parallel import tp as _tp
from bridge.parallel import vocab as _vocab
from bridge.parallel._common import check_rank

__all__ = ["KINDS", "ShardingKind", "check_meta", "merge", "shard_count", "shard_shape", "split"]


@dataclass(frozen=True)
class ShardingKind:
    """One sharding kind: its split/merge pair and the metadata it accepts.

    Attributes:
        name: the kind's name, as written in mappings and ``layout.json``.
        split: ``split(tensor, *, tp, name, **meta) -> list[Tensor]``.
        merge: ``merge(shards, *, name, **meta) -> Tensor``.
        shard_shape: ``shard_shape(shape, *, tp, name, **meta) -> tuple[int, ...]``, the shape
            of every shard, computed without data; it raises the same errors as ``split``.
        meta_keys: every metadata key the kind accepts.
        split_requires: keys that must be present to split.
        merge_requires: keys that must be present to merge.
    """

    name: str
    split: Callable[..., list[torch.Tensor]]
    merge: Callable[..., torch.Tensor]
    shard_shape: Callable[..., tuple[int, ...]]
    meta_keys: frozenset[str] = frozenset()
    split_requires: frozenset[str] = frozenset()
    merge_requires: frozenset[str] = frozenset()


def _split_expert(tensor: torch.Tensor, *, tp: int, name: str, **meta: Any) -> list[torch.Tensor]:
    return _expert.split_expert_stack(tensor, tp=tp, name=name, **meta)


def _merge_expert(shards: Sequence[torch.Tensor], *, name: str, **meta: Any) -> torch.Tensor:
    return _expert.merge_expert_stack(shards, name=name, **meta)


def _kinds(*kinds: ShardingKind) -> dict[str, ShardingKind]:
    return {kind.name: kind for kind in kinds}


#: Every sharding kind, by name.
KINDS: dict[str, ShardingKind] = _kinds(
    ShardingKind("column", _tp.split_column, _tp.merge_column, _tp.column_shard_shape),
    ShardingKind("row", _tp.split_row, _tp.merge_row, _tp.row_shard_shape),
    ShardingKind(
        "replicated", _tp.split_replicated, _tp.merge_replicated, _tp.replicated_shard_shape
    ),
    ShardingKind(
        "qkv",
        _tp.split_qkv,
        _tp.merge_qkv,
        _tp.qkv_shard_shape,
        meta_keys=frozenset({"num_query_groups"}),
        split_requires=frozenset({"num_query_groups"}),
        merge_requires=frozenset({"num_query_groups"}),
    ),
    ShardingKind("gated", _tp.split_gated, _tp.merge_gated, _tp.gated_shard_shape),
    ShardingKind(
        "vocab",
        _vocab.split_vocab,
        _vocab.merge_vocab,
        _vocab.vocab_shard_shape,
        meta_keys=frozenset({"divisible_by", "vocab_size"}),
        merge_requires=frozenset({"vocab_size"}),
    ),
    ShardingKind(
        "expert",
        _split_expert,
        _merge_expert,
        _expert.expert_stack_shard_shape,
        meta_keys=frozenset({"ep", "inner"}),
        split_requires=frozenset({"ep"}),
        merge_requires=frozenset({"ep"}),
    ),
)


def _kind(kind: str, name: str) -> ShardingKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise ParallelLayoutError(
            f"Unknown sharding kind {kind!r} for {name!r}; expected one of {sorted(KINDS)}."
        ) from None


def check_meta(
    kind: str, meta: Mapping[str, Any], *, name: str = "<tensor>", for_merge: bool = False
) -> ShardingKind:
    """Validate ``meta`` for ``kind`` (unknown or missing keys raise) and return the kind."""
    spec = _kind(kind, name)
    unknown = set(meta) - spec.meta_keys
    if unknown:
        allowed = sorted(spec.meta_keys) or "none"
        raise ParallelLayoutError(
            f"Sharding kind {kind!r} of {name!r} got unknown metadata {sorted(unknown)}; "
            f"it accepts: {allowed}."
        )
    required = spec.merge_requires if for_merge else spec.split_requires
    missing = required - set(meta)
    if missing:
        raise ParallelLayoutError(
            f"Sharding kind {kind!r} of {name!r} needs metadata {sorted(missing)} to "
            f"{'merge' if for_merge else 'split'}; got {dict(meta)}."
        )
    return spec


def shard_count(kind: str, *, tp: int, **meta: Any) -> int:
    """How many shards :func:`split` returns: ``tp``, or ``ep * tp`` for ``expert``."""
    return tp * int(meta.get("ep", 1)) if kind == "expert" else tp


def split(
    kind: str,
    tensor: torch.Tensor,
    *,
    tp: int,
    rank: int | None = None,
    name: str = "<tensor>",
    **meta: Any,
) -> list[torch.Tensor] | torch.Tensor:
    """Split a full tensor by its sharding ``kind``.

    Args:
        kind: a key of :data:`KINDS`.
        tensor: the full (TP-unsharded) tensor.
        tp: tensor-parallel size (the expert tensor-parallel size for ``expert``).
        rank: if given, return only this rank's shard instead of the list.
        name: parameter name, used in error messages.
        **meta: the kind's metadata (see the module docstring).
    """
    spec = check_meta(kind, meta, name=name)
    shards = spec.split(tensor, tp=tp, name=name, **meta)
    if rank is None:
        return shards
    check_rank(rank, len(shards), f"{kind} shard")
    return shards[rank]


def shard_shape(
    kind: str, shape: Sequence[int], *, tp: int, name: str = "<tensor>", **meta: Any
) -> tuple[int, ...]:
    """The shape of every shard :func:`split` would return for a full tensor of ``shape``.

    Pure arithmetic (no tensor is built); raises the same :class:`ParallelLayoutError` as
    :func:`split` would, so a whole layout can be validated before any data is read.
    """
    spec = check_meta(kind, meta, name=name)
    return spec.shard_shape(tuple(shape), tp=tp, name=name, **meta)


def merge(
    kind: str, shards: Sequence[torch.Tensor], *, name: str = "<tensor>", **meta: Any
) -> torch.Tensor:
    """Merge the rank-ordered ``shards`` of a parameter back into the full tensor."""
    spec = check_meta(kind, meta, name=name, for_merge=True)
    return spec.merge(list(shards), name=name, **meta)
