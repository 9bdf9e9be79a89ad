"""Tensor-parallel split/merge for the dense sharding kinds, each split next to its merge.

A *full* tensor is the TP-unsharded Megatron tensor; a split returns the ``tp`` shards in rank
order, a merge takes them back, and ``<kind>_shard_shape(shape, tp=...)`` gives the shards' shape
without data (it holds the checks, so it raises exactly when the split would). Split then merge is bit-exact, and merge then split returns the
same shards. Shards are contiguous and may share memory with the full tensor: do not modify
them in place.

Kinds (MCore's ``ColumnParallelLinear`` / ``RowParallelLinear`` conventions):

* ``column``: split dim 0 (the output features) in ``tp`` equal pieces.
* ``row``: split dim 1 (the input features); a 1-D tensor of a row-parallel layer (its bias) is
  replicated on every rank.
* ``replicated``: every rank holds the whole tensor (layer norms); merge checks that the copies
  are bit-identical.
* ``qkv``: the fused ``linear_qkv`` weight/bias, laid out per query group along dim 0 as
  ``[g0: q_0..q_{h/g-1}, k, v][g1: ...]`` (rows of ``head_dim``). A rank holds whole groups, so
  this is a column split that requires ``num_query_groups % tp == 0``.
* ``gated``: the SwiGLU ``linear_fc1`` is ``cat([gate, up])`` along dim 0; rank ``r`` holds
  ``cat([gate_r, up_r])``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bridge.errors import ParallelLayoutError
from bridge.parallel._common import (
    bitwise_equal,
    check_size,
    require_divisible,
    require_same_shapes,
)

__all__ = [
    "Shape",
    "column_shard_shape",
    "gated_shard_shape",
    "merge_column",
    "merge_gated",
    "merge_qkv",
    "merge_replicated",
    "merge_row",
    "qkv_shard_shape",
    "replicated_shard_shape",
    "row_shard_shape",
    "split_column",
    "split_gated",
    "split_qkv",
    "split_replicated",
    "split_row",
]

_DEFAULT_NAME = "<tensor>"
Shape = Sequence[int]


def _require_dims(shape: Shape, min_dims: int, *, name: str, kind: str) -> None:
    if len(shape) < min_dims:
        raise ParallelLayoutError(
            f"Cannot shard {name!r} as kind {kind!r}: it needs at least {min_dims} dimension(s) "
            f"but has shape {tuple(shape)}. Map this parameter to another sharding kind "
            "(a scalar or a norm weight is usually 'replicated')."
        )


def _split_dim(tensor: torch.Tensor, dim: int, tp: int) -> list[torch.Tensor]:
    return [piece.contiguous() for piece in torch.chunk(tensor, tp, dim=dim)]


# --- column -----------------------------------------------------------------------------------


def column_shard_shape(shape: Shape, *, tp: int, name: str = _DEFAULT_NAME) -> tuple[int, ...]:
    """The shape of each :func:`split_column` shard; raises if ``shape`` cannot be split."""
    check_size(tp, "tp")
    _require_dims(shape, 1, name=name, kind="column")
    require_divisible(shape[0], tp, name=name, what="dim 0")
    return (shape[0] // tp, *shape[1:])


def split_column(tensor: torch.Tensor, *, tp: int, name: str = _DEFAULT_NAME) -> list[torch.Tensor]:
    """Split dim 0 into ``tp`` equal shards (``ColumnParallelLinear`` weight and bias)."""
    column_shard_shape(tensor.shape, tp=tp, name=name)
    return _split_dim(tensor, 0, tp)


def _adjacent_rows(shards: Sequence[torch.Tensor]) -> bool:
    """Whether the shards are consecutive row blocks of one contiguous buffer (so their dim-0
    concatenation is already in memory)."""
    first = shards[0]
    if not all(s.is_contiguous() and s.device == first.device and s.dtype == first.dtype for s in shards):
        return False
    if any(s.untyped_storage().data_ptr() != first.untyped_storage().data_ptr() for s in shards):
        return False
    return all(s.data_ptr() == first.data_ptr() + i * first.nbytes for i, s in enumerate(shards))


def _cat_shards(shards: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat`` of the shards, without a copy where the result is already in memory: one shard
    (TP = 1), or dim-0 shards that are consecutive blocks of one buffer (gathered into it), viewed whole."""
    if len(shards) == 1:
        return shards[0]
    if dim == 0 and shards[0].numel() and _adjacent_rows(shards):
        first = shards[0]
        shape = (first.shape[0] * len(shards), *first.shape[1:])
        return first.as_strided(shape, torch.empty(shape, device="meta").stride(), first.storage_offset())
    return torch.cat(list(shards), dim=dim)


def merge_column(shards: Sequence[torch.Tensor], *, name: str = _DEFAULT_NAME) -> torch.Tensor:
    """Inverse of :func:`split_column`: concatenate along dim 0."""
    require_same_shapes(shards, name=name, kind="column")
    _require_dims(shards[0].shape, 1, name=name, kind="column")
    return _cat_shards(shards, 0)


# --- row --------------------------------------------------------------------------------------


def row_shard_shape(shape: Shape, *, tp: int, name: str = _DEFAULT_NAME) -> tuple[int, ...]:
    """The shape of each :func:`split_row` shard; raises if ``shape`` cannot be split."""
    check_size(tp, "tp")
    _require_dims(shape, 1, name=name, kind="row")
    if len(shape) == 1:
        return tuple(shape)
    require_divisible(shape[1], tp, name=name, what="dim 1")
    return (shape[0], shape[1] // tp, *shape[2:])


def split_row(tensor: torch.Tensor, *, tp: int, name: str = _DEFAULT_NAME) -> list[torch.Tensor]:
    """Split dim 1 into ``tp`` equal shards; a 1-D tensor (the layer's bias) is replicated."""
    row_shard_shape(tensor.shape, tp=tp, name=name)
    if tensor.dim() == 1:
        return split_replicated(tensor, tp=tp, name=name)
    return _split_dim(tensor, 1, tp)


def merge_row(shards: Sequence[torch.Tensor], *, name: str = _DEFAULT_NAME) -> torch.Tensor:
    """Inverse of :func:`split_row`: concatenate along dim 1, or check the replicated 1-D copies."""
    require_same_shapes(shards, name=name, kind="row")
    _require_dims(shards[0].shape, 1, name=name, kind="row")
    if shards[0].dim() == 1:
        return merge_replicated(shards, name=name)
    return _cat_shards(shards, 1)


# --- replicated -------------------------------------------------------------------------------


def replicated_shard_shape(shape: Shape, *, tp: int, name: str = _DEFAULT_NAME) -> tuple[int, ...]:
    """The shape of each :func:`split_replicated` shard: ``shape`` itself."""
    check_size(tp, "tp")
    return tuple(shape)


def split_replicated(
    tensor: torch.Tensor, *, tp: int, name: str = _DEFAULT_NAME
) -> list[torch.Tensor]:
    """Every rank holds the whole tensor (the same object ``tp`` times)."""
    check_size(tp, "tp")
    return [tensor] * tp


def merge_replicated(shards: Sequence[torch.Tensor], *, name: str = _DEFAULT_NAME) -> torch.Tensor:
    """Return the one copy after checking that every rank's copy is bit-identical."""
    require_same_shapes(shards, name=name, kind="replicated")
    first = shards[0]
    for rank, shard in enumerate(shards[1:], start=1):
        if not bitwise_equal(first, shard):
            raise ParallelLayoutError(
                f"Replicated parameter {name!r} differs between TP rank 0 and TP rank {rank}: "
                "every rank must hold a bit-identical copy. The checkpoint's ranks have drifted "
                "apart (or the shards are not in rank order); re-save it from a synchronised "
                "model, or map the parameter to its real sharding kind."
            )
    return first


# --- qkv --------------------------------------------------------------------------------------


def _check_qkv_rows(rows: int, num_query_groups: int, *, name: str) -> None:
    if not isinstance(num_query_groups, int) or num_query_groups < 1:
        raise ParallelLayoutError(
            f"num_query_groups for {name!r} must be a positive integer, got {num_query_groups!r}."
        )
    if rows % num_query_groups != 0:
        raise ParallelLayoutError(
            f"Fused QKV tensor {name!r} has {rows} rows on dim 0, which is not a multiple of "
            f"num_query_groups={num_query_groups}; expected num_query_groups * "
            "(heads_per_group + 2) * head_dim rows. Check the model's num_query_groups."
        )


def qkv_shard_shape(
    shape: Shape, *, tp: int, num_query_groups: int, name: str = _DEFAULT_NAME
) -> tuple[int, ...]:
    """The shape of each :func:`split_qkv` shard; raises unless ``tp`` divides the query groups."""
    check_size(tp, "tp")
    _require_dims(shape, 1, name=name, kind="qkv")
    _check_qkv_rows(shape[0], num_query_groups, name=name)
    require_divisible(
        num_query_groups,
        tp,
        name=name,
        what="num_query_groups",
        hint="Each TP rank must hold whole query groups (its K and V heads with their queries).",
    )
    return (shape[0] // tp, *shape[1:])


def split_qkv(
    tensor: torch.Tensor, *, tp: int, num_query_groups: int, name: str = _DEFAULT_NAME
) -> list[torch.Tensor]:
    """Split the Megatron fused QKV tensor so that each rank holds ``num_query_groups / tp`` groups."""
    qkv_shard_shape(tensor.shape, tp=tp, num_query_groups=num_query_groups, name=name)
    return _split_dim(tensor, 0, tp)


def merge_qkv(
    shards: Sequence[torch.Tensor], *, num_query_groups: int, name: str = _DEFAULT_NAME
) -> torch.Tensor:
    """Inverse of :func:`split_qkv`: concatenate the ranks' whole groups along dim 0."""
    require_same_shapes(shards, name=name, kind="qkv")
    _require_dims(shards[0].shape, 1, name=name, kind="qkv")
    merged = _cat_shards(shards, 0)
    _check_qkv_rows(merged.shape[0], num_query_groups, name=name)
    require_divisible(num_query_groups, len(shards), name=name, what="num_query_groups")
    return merged


# --- gated (SwiGLU fc1) -----------------------------------------------------------------------


def _require_even(rows: int, *, name: str, what: str) -> None:
    if rows % 2 != 0:
        raise ParallelLayoutError(
            f"Gated MLP tensor {name!r} ({what}) has {rows} rows on dim 0; expected an even "
            "number (cat([gate, up]) of equal halves). Map a non-gated fc1 as 'column'."
        )


def _gate_up(tensor: torch.Tensor, *, name: str, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    _require_even(tensor.shape[0], name=name, what=what)
    gate, up = torch.chunk(tensor, 2, dim=0)
    return gate, up


def gated_shard_shape(shape: Shape, *, tp: int, name: str = _DEFAULT_NAME) -> tuple[int, ...]:
    """The shape of each :func:`split_gated` shard; raises unless ``tp`` divides each half."""
    check_size(tp, "tp")
    _require_dims(shape, 1, name=name, kind="gated")
    _require_even(shape[0], name=name, what="full tensor")
    require_divisible(shape[0] // 2, tp, name=name, what="the gate/up half of dim 0")
    return (shape[0] // tp, *shape[1:])


def split_gated(tensor: torch.Tensor, *, tp: int, name: str = _DEFAULT_NAME) -> list[torch.Tensor]:
    """Split ``cat([gate, up])`` so that rank ``r`` holds ``cat([gate_r, up_r])``."""
    gated_shard_shape(tensor.shape, tp=tp, name=name)
    gate, up = torch.chunk(tensor, 2, dim=0)
    if tp == 1:
        return [tensor.contiguous()]
    return [
        torch.cat([g, u], dim=0)
        for g, u in zip(torch.chunk(gate, tp, dim=0), torch.chunk(up, tp, dim=0), strict=True)
    ]


def merge_gated(shards: Sequence[torch.Tensor], *, name: str = _DEFAULT_NAME) -> torch.Tensor:
    """Inverse of :func:`split_gated`: ``cat([gate_0..gate_{tp-1}, up_0..up_{tp-1}])``."""
    require_same_shapes(shards, name=name, kind="gated")
    _require_dims(shards[0].shape, 1, name=name, kind="gated")
    if len(shards) == 1:
        _gate_up(shards[0], name=name, what="shard 0")
        return shards[0]
    halves = [_gate_up(shard, name=name, what=f"shard {rank}") for rank, shard in enumerate(shards)]
    return torch.cat([g for g, _ in halves] + [u for _, u in halves], dim=0)
