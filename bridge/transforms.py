"""Pure tensor transforms between HF and Megatron layouts, each next to its inverse.

Every function here is pure (no I/O, no global state, inputs never modified) and
bit-exact: ``split_qkv(interleave_qkv(q, k, v, ...), ...) == (q, k, v)`` and the
other way round, for any valid shape and dtype. Tests prove each pair with
Hypothesis (``tests/bridge/test_transforms.py``). The fusing transforms have a ``*_shape(s)``
twin that validates the input shapes and computes the result's without any tensor: the transform
itself validates through it, and planners use it instead of running the transform on ``meta``
tensors (whose ``torch.cat`` imports ``torch._dynamo``, half a second of start-up).

Megatron's fused QKV layout, per query group ``g`` (``ng`` groups, ``nh`` heads,
``hd`` head size, ``qpg = nh // ng`` query heads per group)::

    rows of linear_qkv = [ q(g0,h0) .. q(g0,h_qpg-1), k(g0), v(g0), q(g1,h0), ... ]

each block ``hd`` rows tall. Works for weights (``[rows, in]``) and biases (``[rows]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "interleave_qkv",
    "interleave_qkv_shape",
    "split_qkv",
    "fuse_gate_up",
    "fuse_gate_up_shape",
    "split_gate_up",
    "concat_qkv",
    "unconcat_qkv",
    "unconcat_qkv_shapes",
]

Shape = tuple[int, ...]


def _check_qkv_dims(num_attention_heads: int, num_query_groups: int, head_dim: int) -> None:
    if num_attention_heads <= 0 or num_query_groups <= 0 or head_dim <= 0:
        raise ValueError(
            f"expected positive head counts and head_dim, found num_attention_heads={num_attention_heads}, "
            f"num_query_groups={num_query_groups}, head_dim={head_dim}"
        )
    if num_attention_heads % num_query_groups:
        raise ValueError(
            f"num_attention_heads ({num_attention_heads}) must be a multiple of num_query_groups "
            f"({num_query_groups}); check num_key_value_heads in the HF config"
        )


def interleave_qkv_shape(
    q: Sequence[int], k: Sequence[int], v: Sequence[int], *, num_query_groups: int, head_dim: int
) -> Shape:
    """The shape :func:`interleave_qkv` returns for inputs of these shapes (raises as it does)."""
    q, k, v = tuple(q), tuple(k), tuple(v)
    if not q or not k or q[0] % head_dim or k != v or q[1:] != k[1:]:
        raise ValueError(
            f"expected q [nh*{head_dim}, ...] and k, v [ng*{head_dim}, ...] with equal trailing dims, "
            f"found q {q}, k {k}, v {v}"
        )
    _check_qkv_dims(q[0] // head_dim, num_query_groups, head_dim)
    if k[0] != num_query_groups * head_dim:
        raise ValueError(
            f"expected k with {num_query_groups}*{head_dim} rows, found {k[0]}; "
            "num_query_groups must equal the HF num_key_value_heads"
        )
    return (q[0] + 2 * k[0], *q[1:])


def interleave_qkv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_query_groups: int, head_dim: int
) -> torch.Tensor:
    """HF ``q_proj``/``k_proj``/``v_proj`` -> Megatron ``linear_qkv`` (grouped, interleaved).

    Inverse: :func:`split_qkv`.
    """
    interleave_qkv_shape(q.shape, k.shape, v.shape, num_query_groups=num_query_groups, head_dim=head_dim)
    num_heads = q.shape[0] // head_dim
    rest = q.shape[1:]
    qpg = num_heads // num_query_groups
    qg = q.reshape(num_query_groups, qpg * head_dim, *rest)
    kg = k.reshape(num_query_groups, head_dim, *rest)
    vg = v.reshape(num_query_groups, head_dim, *rest)
    return torch.cat([qg, kg, vg], dim=1).reshape(-1, *rest).contiguous()


def split_qkv(
    qkv: torch.Tensor, *, num_attention_heads: int, num_query_groups: int, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Megatron ``linear_qkv`` -> HF ``(q, k, v)``. Inverse of :func:`interleave_qkv`."""
    _check_qkv_dims(num_attention_heads, num_query_groups, head_dim)
    qpg = num_attention_heads // num_query_groups
    rows = num_query_groups * (qpg + 2) * head_dim
    if qkv.shape[0] != rows:
        raise ValueError(
            f"expected linear_qkv with {rows} rows (groups={num_query_groups}, q per group={qpg}, "
            f"head_dim={head_dim}), found {qkv.shape[0]}"
        )
    rest = qkv.shape[1:]
    grouped = qkv.reshape(num_query_groups, (qpg + 2) * head_dim, *rest)
    q, k, v = torch.split(grouped, [qpg * head_dim, head_dim, head_dim], dim=1)
    return (
        q.reshape(-1, *rest).contiguous(),
        k.reshape(-1, *rest).contiguous(),
        v.reshape(-1, *rest).contiguous(),
    )


def concat_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HF-style fused ``[all q; all k; all v]`` (as some remote-code models store it).

    Inverse: :func:`unconcat_qkv`.
    """
    return torch.cat([q, k, v], dim=0).contiguous()


def unconcat_qkv_shapes(
    qkv: Sequence[int], *, num_attention_heads: int, num_query_groups: int, head_dim: int
) -> tuple[Shape, Shape, Shape]:
    """The shapes :func:`unconcat_qkv` returns for an input of shape ``qkv`` (raises as it does)."""
    _check_qkv_dims(num_attention_heads, num_query_groups, head_dim)
    qkv = tuple(qkv)
    sizes = [num_attention_heads * head_dim, num_query_groups * head_dim, num_query_groups * head_dim]
    if not qkv or qkv[0] != sum(sizes):
        raise ValueError(f"expected fused qkv with {sum(sizes)} rows, found {qkv[0] if qkv else qkv}")
    q, k, v = ((rows, *qkv[1:]) for rows in sizes)
    return q, k, v


def unconcat_qkv(
    qkv: torch.Tensor, *, num_attention_heads: int, num_query_groups: int, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split an HF-style fused ``[q; k; v]``. Inverse of :func:`concat_qkv`."""
    shapes = unconcat_qkv_shapes(qkv.shape, num_attention_heads=num_attention_heads,
                                 num_query_groups=num_query_groups, head_dim=head_dim)
    q, k, v = torch.split(qkv, [s[0] for s in shapes], dim=0)
    return q.contiguous(), k.contiguous(), v.contiguous()


def fuse_gate_up_shape(gate: Sequence[int], up: Sequence[int]) -> Shape:
    """The shape :func:`fuse_gate_up` returns for inputs of these shapes (raises as it does)."""
    gate, up = tuple(gate), tuple(up)
    if gate != up or not gate:
        raise ValueError(f"expected gate and up projections of equal shape, found {gate} and {up}")
    return (2 * gate[0], *gate[1:])


def fuse_gate_up(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """HF ``gate_proj`` + ``up_proj`` -> Megatron ``linear_fc1`` = ``[gate; up]``.

    Inverse: :func:`split_gate_up`.
    """
    fuse_gate_up_shape(gate.shape, up.shape)
    return torch.cat([gate, up], dim=0).contiguous()


def split_gate_up(fc1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Megatron ``linear_fc1`` -> ``(gate, up)``. Inverse of :func:`fuse_gate_up`."""
    if fc1.shape[0] % 2:
        raise ValueError(f"expected an even number of rows in a gated linear_fc1, found {fc1.shape[0]}")
    gate, up = torch.chunk(fc1, 2, dim=0)
    return gate.contiguous(), up.contiguous()
