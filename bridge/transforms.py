"""Pure tensor transforms between HF and Megatron layouts, each next to its inverse.

Every function here is pure (no I/O, no global state, inputs never modified) and
bit-exact: ``split_qkv(interleave_qkv(q, k, v, ...), ...) == (q, k, v)`` and the
other way round, for any valid shape and dtype. Tests prove each pair with
Hypothesis (``tests/bridge/test_transforms.py``).

Megatron's fused QKV layout, per query group ``g`` (``ng`` groups, ``nh`` heads,
``hd`` head size, ``qpg = nh // ng`` query heads per group)::

    rows of linear_qkv = [ q(g0,h0) .. q(g0,h_qpg-1), k(g0), v(g0), q(g1,h0), ... ]

each block ``hd`` rows tall. Works for weights (``[rows, in]``) and biases (``[rows]``).
"""

from __future__ import annotations

import torch

__all__ = [
    "interleave_qkv",
    "split_qkv",
    "fuse_gate_up",
    "split_gate_up",
    "concat_qkv",
    "unconcat_qkv",
]


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


def interleave_qkv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_query_groups: int, head_dim: int
) -> torch.Tensor:
    """HF ``q_proj``/``k_proj``/``v_proj`` -> Megatron ``linear_qkv`` (grouped, interleaved).

    Inverse: :func:`split_qkv`.
    """
    if q.shape[0] % head_dim or k.shape != v.shape or q.shape[1:] != k.shape[1:]:
        raise ValueError(
            f"expected q [nh*{head_dim}, ...] and k, v [ng*{head_dim}, ...] with equal trailing dims, "
            f"found q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    num_heads = q.shape[0] // head_dim
    _check_qkv_dims(num_heads, num_query_groups, head_dim)
    if k.shape[0] != num_query_groups * head_dim:
        raise ValueError(
            f"expected k with {num_query_groups}*{head_dim} rows, found {k.shape[0]}; "
            "num_query_groups must equal the HF num_key_value_heads"
        )
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


def unconcat_qkv(
    qkv: torch.Tensor, *, num_attention_heads: int, num_query_groups: int, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split an HF-style fused ``[q; k; v]``. Inverse of :func:`concat_qkv`."""
    _check_qkv_dims(num_attention_heads, num_query_groups, head_dim)
    sizes = [num_attention_heads * head_dim, num_query_groups * head_dim, num_query_groups * head_dim]
    if qkv.shape[0] != sum(sizes):
        raise ValueError(f"expected fused qkv with {sum(sizes)} rows, found {qkv.shape[0]}")
    q, k, v = torch.split(qkv, sizes, dim=0)
    return q.contiguous(), k.contiguous(), v.contiguous()


def fuse_gate_up(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """HF ``gate_proj`` + ``up_proj`` -> Megatron ``linear_fc1`` = ``[gate; up]``.

    Inverse: :func:`split_gate_up`.
    """
    if gate.shape != up.shape:
        raise ValueError(
            f"expected gate and up projections of equal shape, found {tuple(gate.shape)} and {tuple(up.shape)}"
        )
    return torch.cat([gate, up], dim=0).contiguous()


def split_gate_up(fc1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Megatron ``linear_fc1`` -> ``(gate, up)``. Inverse of :func:`fuse_gate_up`."""
    if fc1.shape[0] % 2:
        raise ValueError(f"expected an even number of rows in a gated linear_fc1, found {fc1.shape[0]}")
    gate, up = torch.chunk(fc1, 2, dim=0)
    return gate.contiguous(), up.contiguous()
