"""One TP rank's shard of a Megatron parameter, read straight from the HF tensors it comes from.

The reference is ``split(kind, mapping.hf_to_megatron(full HF tensors), tp)[rank]``: read every
HF tensor whole, build the full Megatron tensor, keep one piece. :func:`shard_pieces` gives the same
bits as :class:`~bridge.streaming.pieces.Pieces` made of the byte ranges of the HF files that end up
in the piece (nothing is read until a writer copies them, or a caller asks for the data), so fused
layouts are never assembled in memory:

=====================  =============  ===============================================================
mapping                kind           what rank ``r`` of ``tp`` reads
=====================  =============  ===============================================================
direct (Auto, Column,  ``column``,    rows ``r*n/tp : (r+1)*n/tp``
Row, Replicated)       ``qkv``
direct                 ``row``        columns ``r*m/tp : (r+1)*m/tp``: a span per row (a 1-D bias: all)
direct                 ``vocab``      its rows of the padded vocabulary that exist (padding: zeros)
direct                 ``gated``      rows ``r`` of each half (``[gate; up]`` stored fused)
direct                 ``replicated`` everything
``QKVMapping``         ``qkv``        for each of its query groups: its q rows, k rows, v rows
``ConcatenatedQKV``    ``qkv``        the same rows, out of the fused ``[q; k; v]`` tensor
``GatedMLPMapping``    ``gated``      rows ``r`` of gate, then rows ``r`` of up
``StackedExpert``      any            its expert's slice of the stacked tensor, laid out in memory
=====================  =============  ===============================================================

A mapping class that overrides ``hf_to_megatron`` (or the ``expert`` kind) falls back to the
reference, reading whole tensors into memory. :func:`all_shard_pieces` gives every rank's shard at
once, reading a row-parallel tensor once into memory instead of copying it one row piece at a time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import torch

from bridge import transforms
from bridge.errors import WeightMismatchError
from bridge.mappings import (
    AutoMapping,
    ConcatenatedQKVMapping,
    GatedMLPMapping,
    MappingContext,
    MegatronParamMapping,
    QKVMapping,
    StackedExpertMapping,
)
from bridge.parallel import kinds
from bridge.parallel._common import check_rank
from bridge.streaming.pieces import FileSpan, Part, Pieces, Scratch

__all__ = ["TensorSource", "all_shard_pieces", "full_shape", "read_shard", "reads_slices", "shard_pieces",
           "tp_meta"]

Shape = tuple[int, ...]

class TensorSource(Protocol):
    """What :func:`shard_pieces` reads from (:class:`~bridge.streaming.files.SliceReader`)."""

    def shape(self, name: str) -> tuple[int, ...]: ...
    def dtype(self, name: str) -> torch.dtype: ...
    def whole(self, name: str) -> FileSpan: ...
    def rows(self, name: str, start: int, stop: int) -> FileSpan: ...
    def columns(self, name: str, start: int, stop: int) -> list[FileSpan]: ...
    def get(self, name: str) -> torch.Tensor: ...


def tp_meta(mapping: MegatronParamMapping, ctx: MappingContext) -> dict[str, Any]:
    """The metadata ``bridge.parallel.kinds`` needs for this mapping's sharding kind."""
    if mapping.sharding == "vocab":
        return {"vocab_size": ctx.vocab_size, "divisible_by": ctx.make_vocab_size_divisible_by}
    if mapping.sharding == "qkv":
        return {"num_query_groups": ctx.num_query_groups}
    return {}


def _direct_shape(m: MegatronParamMapping, ctx: MappingContext, shapes: dict[str, Shape]) -> Shape:
    return shapes[m.hf_names()[0]]


def _qkv_shape(m: MegatronParamMapping, ctx: MappingContext, shapes: dict[str, Shape]) -> Shape:
    names = m.hf_param
    assert isinstance(names, dict)
    return transforms.interleave_qkv_shape(shapes[names["q"]], shapes[names["k"]], shapes[names["v"]],
                                           num_query_groups=ctx.num_query_groups, head_dim=ctx.head_dim)


def _qkv_concat_shape(m: MegatronParamMapping, ctx: MappingContext, shapes: dict[str, Shape]) -> Shape:
    q, k, v = transforms.unconcat_qkv_shapes(shapes[m.hf_names()[0]], num_attention_heads=ctx.num_attention_heads,
                                             num_query_groups=ctx.num_query_groups, head_dim=ctx.head_dim)
    return transforms.interleave_qkv_shape(q, k, v, num_query_groups=ctx.num_query_groups, head_dim=ctx.head_dim)


def _gated_shape(m: MegatronParamMapping, ctx: MappingContext, shapes: dict[str, Shape]) -> Shape:
    names = m.hf_param
    assert isinstance(names, dict)
    return transforms.fuse_gate_up_shape(shapes[names["gate"]], shapes[names["up"]])


#: ``hf_to_megatron`` implementation -> the shape it returns, computed from the HF shapes alone. Other
#: mappings run ``hf_to_megatron`` on meta tensors (whose ``torch.cat`` imports ``torch._dynamo``).
_SHAPES: dict[Any, Callable[[MegatronParamMapping, MappingContext, dict[str, Shape]], Shape]] = {
    AutoMapping.hf_to_megatron: _direct_shape,
    QKVMapping.hf_to_megatron: _qkv_shape,
    ConcatenatedQKVMapping.hf_to_megatron: _qkv_concat_shape,
    GatedMLPMapping.hf_to_megatron: _gated_shape,
}


def full_shape(mapping: MegatronParamMapping, ctx: MappingContext,
               source: TensorSource) -> tuple[torch.dtype, tuple[int, ...]]:
    """``(dtype, shape)`` of the full Megatron tensor, from the HF shapes (no data is read): arithmetic for the
    mappings of ``_SHAPES``, else ``hf_to_megatron`` on meta tensors. The dtype is the HF tensors' promoted
    one, as ``torch.cat`` gives it."""
    names = mapping.hf_names()
    shaper = _SHAPES.get(type(mapping).hf_to_megatron)
    try:
        if shaper is not None:
            dtype = functools.reduce(torch.promote_types, (source.dtype(n) for n in names))
            return dtype, tuple(shaper(mapping, ctx, {n: tuple(source.shape(n)) for n in names}))
        hf = {n: torch.empty(source.shape(n), dtype=source.dtype(n), device="meta") for n in names}
        full = mapping.hf_to_megatron(hf, ctx)
    except (ValueError, RuntimeError) as exc:
        shapes = {n: tuple(source.shape(n)) for n in names}
        raise WeightMismatchError(
            f"{mapping.megatron_param}: cannot be built from HF tensors {shapes}: {exc}. Check that config.json "
            "describes these weights (heads, key/value heads, head_dim, sizes)."
        ) from exc
    return full.dtype, tuple(full.shape)


def _chunk(n: int, tp: int, rank: int) -> tuple[int, int]:
    size = n // tp
    return rank * size, (rank + 1) * size


# -- direct mappings: the Megatron tensor is the HF tensor -----------------------------------------


def _direct(m: MegatronParamMapping, ctx: MappingContext, src: TensorSource, tp: int, rank: int) -> list[Part]:
    name = m.hf_names()[0]
    shape = src.shape(name)
    kind = m.sharding
    if kind == "replicated" or (kind == "row" and len(shape) == 1) or (tp == 1 and kind != "vocab"):
        return [src.whole(name)]
    if kind in ("column", "qkv"):
        return [src.rows(name, *_chunk(shape[0], tp, rank))]
    if kind == "row":
        return list(src.columns(name, *_chunk(shape[1], tp, rank)))
    if kind == "gated":
        half = shape[0] // 2
        start, stop = _chunk(half, tp, rank)
        return [src.rows(name, start, stop), src.rows(name, half + start, half + stop)]
    assert kind == "vocab", kind
    rows = kinds.shard_shape("vocab", shape, tp=tp, name=m.megatron_param, **tp_meta(m, ctx))[0]
    start = rank * rows
    have = max(0, min(start + rows, shape[0]) - start)
    out: list[Part] = [src.rows(name, start, start + have)] if have else []
    if have < rows:  # padding rows past the vocabulary: zeros, as split_vocab writes them
        out.append(torch.zeros((rows - have, *shape[1:]), dtype=src.dtype(name)))
    return out


# -- fused mappings ---------------------------------------------------------------------------------


def _groups(ctx: MappingContext, tp: int, rank: int) -> list[tuple[int, int, int, int]]:
    """``(q_start, q_stop, kv_start, kv_stop)`` rows of each query group of rank ``rank``, in order."""
    per_rank = ctx.num_query_groups // tp
    q_rows = ctx.num_attention_heads // ctx.num_query_groups * ctx.head_dim
    hd = ctx.head_dim
    return [(g * q_rows, (g + 1) * q_rows, g * hd, (g + 1) * hd)
            for g in range(rank * per_rank, (rank + 1) * per_rank)]


def _qkv(m: MegatronParamMapping, ctx: MappingContext, src: TensorSource, tp: int, rank: int) -> list[Part]:
    """Megatron's fused layout per group: its q rows, then its k rows, then its v rows."""
    names = m.hf_param
    assert isinstance(names, dict)
    return [src.rows(names[part], a, b) for q0, q1, k0, k1 in _groups(ctx, tp, rank)
            for part, a, b in (("q", q0, q1), ("k", k0, k1), ("v", k0, k1))]


def _qkv_concat(m: MegatronParamMapping, ctx: MappingContext, src: TensorSource, tp: int, rank: int) -> list[Part]:
    name = m.hf_names()[0]
    k_at = ctx.num_attention_heads * ctx.head_dim
    v_at = k_at + ctx.num_query_groups * ctx.head_dim
    return [src.rows(name, a, b) for q0, q1, k0, k1 in _groups(ctx, tp, rank)
            for a, b in ((q0, q1), (k_at + k0, k_at + k1), (v_at + k0, v_at + k1))]


def _gated(m: MegatronParamMapping, ctx: MappingContext, src: TensorSource, tp: int, rank: int) -> list[Part]:
    names = m.hf_param
    assert isinstance(names, dict)
    start, stop = _chunk(src.shape(names["gate"])[0], tp, rank)
    return [src.rows(names["gate"], start, stop), src.rows(names["up"], start, stop)]


def _stacked_expert(m: MegatronParamMapping, ctx: MappingContext, src: TensorSource, tp: int,
                    rank: int) -> list[Part]:
    """One expert's slice of ``[experts, ...]`` (contiguous rows of the file), read alone and laid out in memory
    (a transpose is not a file span), instead of the whole stacked tensor once per expert."""
    assert isinstance(m, StackedExpertMapping) and m.expert is not None, m
    name = m.hf_names()[0]
    if src.shape(name)[0] != m.num_experts:
        raise WeightMismatchError(f"{name}: expected {m.num_experts} experts in dim 0, found shape {src.shape(name)}")
    full = m.expert_to_megatron(src.rows(name, m.expert, m.expert + 1).read()[0])
    return [kinds.split(m.sharding, full, tp=tp, rank=rank, name=m.megatron_param, **tp_meta(m, ctx))]


Slicer = Callable[[MegatronParamMapping, MappingContext, TensorSource, int, int], list[Part]]

#: ``(hf_to_megatron implementation, sharding kind)`` -> sliced reader. Data: add a row per new fused mapping.
_SLICERS: dict[tuple[Any, str], Slicer] = {
    **{(AutoMapping.hf_to_megatron, kind): _direct
       for kind in ("column", "row", "replicated", "qkv", "gated", "vocab")},
    (QKVMapping.hf_to_megatron, "qkv"): _qkv,
    (ConcatenatedQKVMapping.hf_to_megatron, "qkv"): _qkv_concat,
    (GatedMLPMapping.hf_to_megatron, "gated"): _gated,
    **{(StackedExpertMapping.hf_to_megatron, kind): _stacked_expert for kind in ("column", "row", "replicated", "gated")},
}


def reads_slices(mapping: MegatronParamMapping) -> bool:
    """Whether :func:`shard_pieces` reads only the rank's part for ``mapping`` (not the fallback)."""
    return (type(mapping).hf_to_megatron, mapping.sharding) in _SLICERS


def shard_pieces(mapping: MegatronParamMapping, ctx: MappingContext, source: TensorSource, *, tp: int,
                 rank: int) -> Pieces:
    """Rank ``rank``'s shard, bit-identical to the reference split, as pieces of the HF files.

    Raises:
        ParallelLayoutError: ``tp`` does not divide what the kind splits (checked before reading).
        WeightMismatchError: the HF tensors do not fit the mapping and ``ctx``.
    """
    meta = tp_meta(mapping, ctx)
    dtype, shape = full_shape(mapping, ctx, source)
    want = kinds.shard_shape(mapping.sharding, shape, tp=tp, name=mapping.megatron_param, **meta)  # raises early
    check_rank(rank, kinds.shard_count(mapping.sharding, tp=tp, **meta), f"{mapping.sharding} shard")
    slicer = _SLICERS.get((type(mapping).hf_to_megatron, mapping.sharding))
    if slicer is not None:
        return Pieces(dtype, want, tuple(slicer(mapping, ctx, source, tp, rank)))
    full = mapping.hf_to_megatron({n: source.get(n) for n in mapping.hf_names()}, ctx)
    return Pieces.of(kinds.split(mapping.sharding, full, tp=tp, rank=rank, name=mapping.megatron_param, **meta))  # type: ignore[arg-type]


def all_shard_pieces(mapping: MegatronParamMapping, ctx: MappingContext, source: TensorSource, *,
                     tp: int, scratch: Scratch | None = None) -> list[Pieces]:
    """Every rank's shard (see :func:`shard_pieces`). A row-parallel tensor is read into memory once and
    each rank gets a column slice of it (written row by row, never copied), which beats one file copy
    per row and rank. With ``scratch``, it is read into that buffer: use the result before the next call."""
    name = mapping.hf_names()[0]
    direct = (type(mapping).hf_to_megatron, mapping.sharding) == (AutoMapping.hf_to_megatron, "row")
    if tp == 1 or not direct or len(source.shape(name)) < 2:
        return [shard_pieces(mapping, ctx, source, tp=tp, rank=r) for r in range(tp)]
    dtype, shape = full_shape(mapping, ctx, source)
    kinds.shard_shape("row", shape, tp=tp, name=mapping.megatron_param)  # raises if tp misfits
    full = scratch.read([source.whole(name)])[0] if scratch is not None else source.get(name)
    return [Pieces.of(full[:, slice(*_chunk(shape[1], tp, r))]) for r in range(tp)]


def read_shard(mapping: MegatronParamMapping, ctx: MappingContext, source: TensorSource, *, tp: int,
               rank: int) -> torch.Tensor:
    """Rank ``rank``'s shard as one tensor in memory (see :func:`shard_pieces`)."""
    return shard_pieces(mapping, ctx, source, tp=tp, rank=rank).tensor()
