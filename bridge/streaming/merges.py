"""The HF tensors of one Megatron parameter, as row blocks taken from its TP shards (inverse of ``shards``).

The reference is ``mapping.megatron_to_hf(merge(kind, shards))``: merge the rank shards into the
full Megatron tensor, then split it into HF tensors. :func:`hf_pieces` gives every HF tensor as
:class:`~bridge.streaming.pieces.Pieces` cut straight out of the shards (byte spans of the rank
files, when the shards are spans), so neither the merged tensor nor the split copies exist:

=====================  =============  ===============================================================
mapping                kind           blocks of the HF tensor
=====================  =============  ===============================================================
direct                 ``column``,    every shard, in rank order
                       ``qkv``
direct                 ``vocab``      every shard, in rank order, cut at the vocabulary size
direct                 ``gated``      the first half of every shard, then the second halves
direct                 ``row``        row ``i`` of every shard, for every ``i`` (shards read into memory)
direct                 ``replicated`` one copy, after checking every rank holds the same bits
``QKVMapping``         ``qkv``        q: each group's q rows, rank by rank; k and v likewise
``ConcatenatedQKV``    ``qkv``        the q blocks, then the k blocks, then the v blocks
``GatedMLPMapping``    ``gated``      gate: the first half of every shard; up: the second halves
=====================  =============  ===============================================================

Other mappings (an overridden ``megatron_to_hf``, a kind the mapping was not written for) take the
reference path. Every shard's dtype and shape are checked against the layout first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from bridge.errors import ParallelLayoutError
from bridge.mappings import (
    AutoMapping,
    ConcatenatedQKVMapping,
    GatedMLPMapping,
    MappingContext,
    MegatronParamMapping,
    QKVMapping,
)
from bridge.parallel import kinds
from bridge.parallel.spec import ParamSpec
from bridge.parallel.state import merge_param
from bridge.parallel.tp import merge_replicated
from bridge.streaming.pieces import ColumnJoin, FileSpan, Part, Pieces, Scratch

__all__ = ["hf_pieces", "joins_without_merging"]

Shards = list[Part]


def _cut(part: Part, start: int, stop: int) -> Part:
    return part.rows(start, stop) if isinstance(part, FileSpan) else part[start:stop]


def _data(part: Part) -> torch.Tensor:
    return part.read() if isinstance(part, FileSpan) else part


def _row_parallel(shards: Shards, scratch: Scratch | None) -> Pieces:
    """``cat(shards, dim=1)``: each shard read into memory once, then written row by row (no join copy)."""
    spans = [s for s in shards if isinstance(s, FileSpan)]
    data = scratch.read(spans) if scratch is not None and len(spans) == len(shards) else [_data(s) for s in shards]
    join = ColumnJoin(tuple(data))
    return Pieces(join.dtype, join.shape, (join,))


def _direct(m: MegatronParamMapping, ctx: MappingContext, shards: Shards, spec: ParamSpec,
            scratch: Scratch | None = None) -> dict[str, Pieces]:
    kind, name = spec.kind, m.megatron_param
    if len(shards) == 1 and kind != "vocab":
        out = Pieces.rows(shards)
    elif kind in ("column", "qkv"):
        out = Pieces.rows(shards)
    elif kind == "gated":
        half = shards[0].shape[0] // 2
        out = Pieces.rows([_cut(s, 0, half) for s in shards] + [_cut(s, half, 2 * half) for s in shards])
    elif kind == "vocab":
        left, parts = int(spec.meta["vocab_size"]), []
        for shard in shards:
            if left > 0:
                parts.append(_cut(shard, 0, left))
                left -= parts[-1].shape[0]
        out = Pieces.rows(parts)
    elif kind == "row" and len(shards[0].shape) > 1:
        out = _row_parallel(shards, scratch)
    else:  # replicated, or a row-parallel 1-D bias: every rank holds the same bits
        out = Pieces.of(merge_replicated([_data(s) for s in shards], name=name))
    return {m.hf_names()[0]: out}


def _qkv_blocks(ctx: MappingContext, spec: ParamSpec, shards: Shards) -> tuple[Pieces, Pieces, Pieces]:
    if spec.meta.get("num_query_groups") != ctx.num_query_groups:
        raise ParallelLayoutError(
            f"layout.json records num_query_groups={spec.meta.get('num_query_groups')} for a fused QKV tensor, but "
            f"the config has {ctx.num_query_groups}; export with the config the layout was converted from"
        )
    hd = ctx.head_dim
    q_rows = ctx.num_attention_heads // ctx.num_query_groups * hd
    group = q_rows + 2 * hd
    q: list[Part] = []
    k: list[Part] = []
    v: list[Part] = []
    for shard in shards:
        for at in range(0, shard.shape[0], group):
            q.append(_cut(shard, at, at + q_rows))
            k.append(_cut(shard, at + q_rows, at + q_rows + hd))
            v.append(_cut(shard, at + q_rows + hd, at + group))
    return Pieces.rows(q), Pieces.rows(k), Pieces.rows(v)


def _qkv(m: MegatronParamMapping, ctx: MappingContext, shards: Shards, spec: ParamSpec) -> dict[str, Pieces]:
    names = m.hf_param
    assert isinstance(names, dict)
    q, k, v = _qkv_blocks(ctx, spec, shards)
    return {names["q"]: q, names["k"]: k, names["v"]: v}


def _qkv_concat(m: MegatronParamMapping, ctx: MappingContext, shards: Shards, spec: ParamSpec) -> dict[str, Pieces]:
    q, k, v = _qkv_blocks(ctx, spec, shards)
    return {m.hf_names()[0]: Pieces.rows([*q.parts, *k.parts, *v.parts])}


def _gated(m: MegatronParamMapping, ctx: MappingContext, shards: Shards, spec: ParamSpec) -> dict[str, Pieces]:
    names = m.hf_param
    assert isinstance(names, dict)
    half = shards[0].shape[0] // 2
    return {names["gate"]: Pieces.rows([_cut(s, 0, half) for s in shards]),
            names["up"]: Pieces.rows([_cut(s, half, 2 * half) for s in shards])}


Joiner = Callable[[MegatronParamMapping, MappingContext, Shards, ParamSpec], dict[str, Pieces]]

#: ``(megatron_to_hf implementation, sharding kind)`` -> joiner. Data: a row per new fused mapping.
_JOINERS: dict[tuple[Any, str], Joiner] = {
    **{(AutoMapping.megatron_to_hf, kind): _direct
       for kind in ("column", "row", "replicated", "qkv", "gated", "vocab")},
    (QKVMapping.megatron_to_hf, "qkv"): _qkv,
    (ConcatenatedQKVMapping.megatron_to_hf, "qkv"): _qkv_concat,
    (GatedMLPMapping.megatron_to_hf, "gated"): _gated,
}


def joins_without_merging(mapping: MegatronParamMapping, kind: str) -> bool:
    """Whether :func:`hf_pieces` cuts ``mapping``'s HF tensors out of the shards (not the reference path)."""
    return mapping.sharding == kind and (type(mapping).megatron_to_hf, kind) in _JOINERS


def _check_shards(name: str, shards: Shards, spec: ParamSpec) -> None:
    assert spec.shape is not None and spec.dtype is not None, name
    want = kinds.shard_shape(spec.kind, spec.shape, tp=len(shards), name=name, **spec.meta)
    bad = [(r, s.dtype, tuple(s.shape)) for r, s in enumerate(shards)
           if s.dtype != spec.dtype or tuple(s.shape) != want]
    if bad:
        raise ParallelLayoutError(
            f"{name!r}: layout.json says every TP shard is {spec.dtype} {want}, but rank(s) hold {bad[:4]}; the rank "
            "files do not belong to this layout (re-save or re-convert them)"
        )


def hf_pieces(mapping: MegatronParamMapping, ctx: MappingContext, shards: Shards, spec: ParamSpec, *,
              name: str, scratch: Scratch | None = None) -> dict[str, Pieces]:
    """``{hf_name: pieces}`` for parameter ``name`` from its rank-ordered TP ``shards`` (spans or tensors).

    Row-parallel shards are read into ``scratch`` when given: write the result before the next call.

    Raises:
        ParallelLayoutError: a shard does not match the layout, or replicated copies differ.
    """
    _check_shards(name, shards, spec)
    if joins_without_merging(mapping, spec.kind):
        if (type(mapping).megatron_to_hf, spec.kind) == (AutoMapping.megatron_to_hf, "row"):
            return _direct(mapping, ctx, shards, spec, scratch)
        return _JOINERS[(type(mapping).megatron_to_hf, spec.kind)](mapping, ctx, shards, spec)
    full = merge_param(name, [_data(s) for s in shards], spec)
    return {hf: Pieces.of(t) for hf, t in mapping.megatron_to_hf(full, ctx).items()}
