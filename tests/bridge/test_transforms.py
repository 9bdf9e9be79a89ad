"""Every transform pair of :mod:`bridge.transforms` is inverse both ways, bit-exactly, for any valid
shape and dtype; the interleave agrees with an explicit per-group reference; bad shapes are refused
with messages that name them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge import transforms as T

_SETTINGS = settings(max_examples=60, deadline=None)

# Every dtype the transforms may meet in a checkpoint, with the integer type of the same width used to
# compare bit patterns (NaN payloads and signed zeros included).
_BITS = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.int64: torch.int64,
    torch.int32: torch.int32,
    torch.int8: torch.int8,
    torch.uint8: torch.uint8,
}


@dataclass(frozen=True)
class QKVLayout:
    num_attention_heads: int
    num_query_groups: int
    head_dim: int

    @property
    def q_per_group(self) -> int:
        return self.num_attention_heads // self.num_query_groups


# -- strategies ---------------------------------------------------------------------------------

def dtypes() -> st.SearchStrategy[torch.dtype]:
    return st.sampled_from(sorted(_BITS, key=str))


@st.composite
def qkv_layouts(draw: st.DrawFn, *, max_groups: int = 4, max_q_per_group: int = 4,
                max_head_dim: int = 6) -> QKVLayout:
    """GQA layouts; MHA (one query head per group) and MQA (one group) are drawn often."""
    kind = draw(st.sampled_from(["gqa", "mha", "mqa"]))
    groups = 1 if kind == "mqa" else draw(st.integers(1, max_groups))
    q_per_group = 1 if kind == "mha" else draw(st.integers(1, max_q_per_group))
    head_dim = draw(st.integers(1, max_head_dim))
    return QKVLayout(groups * q_per_group, groups, head_dim)


def trailing_shapes(*, max_dim: int = 5) -> st.SearchStrategy[tuple[int, ...]]:
    """``()`` for 1-D biases, ``(in,)`` for weights, and a rarer 3-D case."""
    dim = st.integers(1, max_dim)
    return st.one_of(st.just(()), st.tuples(dim), st.tuples(dim, dim))


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**31 - 1)


def random_bits(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """A tensor of ``dtype`` with uniformly random bit patterns (NaNs, infinities, subnormals)."""
    gen = torch.Generator().manual_seed(seed)
    ints = _BITS[dtype]
    info = torch.iinfo(ints)
    raw = torch.randint(info.min, info.max, shape, generator=gen, dtype=torch.int64).to(ints)
    return raw.view(dtype)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(_BITS[t.dtype])


def assert_bit_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    assert tuple(a.shape) == tuple(b.shape), (tuple(a.shape), tuple(b.shape))
    assert torch.equal(bits(a.contiguous()), bits(b.contiguous()))


# -- the independent reference --------------------------------------------------------------------

def reference_interleave(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: QKVLayout) -> torch.Tensor:
    """Megatron's ``linear_qkv`` built row by row with explicit loops over groups and heads."""
    hd, qpg = layout.head_dim, layout.q_per_group
    rows: list[torch.Tensor] = []
    for g in range(layout.num_query_groups):
        for h in range(qpg):
            head = g * qpg + h
            rows.extend(q[head * hd + r] for r in range(hd))
        rows.extend(k[g * hd + r] for r in range(hd))
        rows.extend(v[g * hd + r] for r in range(hd))
    return torch.stack(rows)


def _qkv_inputs(layout: QKVLayout, rest: tuple[int, ...], dtype: torch.dtype, seed: int):
    hd = layout.head_dim
    q = random_bits((layout.num_attention_heads * hd, *rest), dtype, seed)
    k = random_bits((layout.num_query_groups * hd, *rest), dtype, seed + 1)
    v = random_bits((layout.num_query_groups * hd, *rest), dtype, seed + 2)
    return q, k, v


def _kw(layout: QKVLayout) -> dict[str, int]:
    return dict(num_attention_heads=layout.num_attention_heads, num_query_groups=layout.num_query_groups,
                head_dim=layout.head_dim)


# -- QKV interleave ------------------------------------------------------------------------------

@_SETTINGS
@given(layout=qkv_layouts(), rest=trailing_shapes(), dtype=dtypes(), seed=seeds())
def test_split_qkv_inverts_interleave_qkv(layout, rest, dtype, seed):
    q, k, v = _qkv_inputs(layout, rest, dtype, seed)
    copies = [t.clone() for t in (q, k, v)]
    fused = T.interleave_qkv(q, k, v, num_query_groups=layout.num_query_groups, head_dim=layout.head_dim)
    for got, want in zip(T.split_qkv(fused, **_kw(layout)), (q, k, v)):
        assert_bit_equal(got, want)
    for t, c in zip((q, k, v), copies):  # inputs untouched
        assert_bit_equal(t, c)


@_SETTINGS
@given(layout=qkv_layouts(), rest=trailing_shapes(), dtype=dtypes(), seed=seeds())
def test_interleave_qkv_inverts_split_qkv(layout, rest, dtype, seed):
    rows = layout.num_query_groups * (layout.q_per_group + 2) * layout.head_dim
    fused = random_bits((rows, *rest), dtype, seed)
    before = fused.clone()
    q, k, v = T.split_qkv(fused, **_kw(layout))
    again = T.interleave_qkv(q, k, v, num_query_groups=layout.num_query_groups, head_dim=layout.head_dim)
    assert_bit_equal(again, fused)
    assert_bit_equal(fused, before)


@_SETTINGS
@given(layout=qkv_layouts(), rest=trailing_shapes(), dtype=dtypes(), seed=seeds())
def test_interleave_qkv_matches_explicit_loops_over_groups(layout, rest, dtype, seed):
    q, k, v = _qkv_inputs(layout, rest, dtype, seed)
    fused = T.interleave_qkv(q, k, v, num_query_groups=layout.num_query_groups, head_dim=layout.head_dim)
    assert_bit_equal(fused, reference_interleave(q, k, v, layout))
    assert fused.is_contiguous()


def test_interleave_qkv_layout_spelled_out():
    """2 groups, 2 query heads per group, head_dim 1: rows are q0 q1 k0 v0 q2 q3 k1 v1."""
    q = torch.tensor([10.0, 11.0, 12.0, 13.0])
    k = torch.tensor([20.0, 21.0])
    v = torch.tensor([30.0, 31.0])
    fused = T.interleave_qkv(q, k, v, num_query_groups=2, head_dim=1)
    assert fused.tolist() == [10.0, 11.0, 20.0, 30.0, 12.0, 13.0, 21.0, 31.0]


# -- concatenated QKV ----------------------------------------------------------------------------

@_SETTINGS
@given(layout=qkv_layouts(), rest=trailing_shapes(), dtype=dtypes(), seed=seeds())
def test_unconcat_qkv_inverts_concat_qkv(layout, rest, dtype, seed):
    q, k, v = _qkv_inputs(layout, rest, dtype, seed)
    fused = T.concat_qkv(q, k, v)
    assert_bit_equal(fused, torch.cat([q, k, v]))
    for got, want in zip(T.unconcat_qkv(fused, **_kw(layout)), (q, k, v)):
        assert_bit_equal(got, want)


@_SETTINGS
@given(layout=qkv_layouts(), rest=trailing_shapes(), dtype=dtypes(), seed=seeds())
def test_concat_qkv_inverts_unconcat_qkv(layout, rest, dtype, seed):
    rows = (layout.num_attention_heads + 2 * layout.num_query_groups) * layout.head_dim
    fused = random_bits((rows, *rest), dtype, seed)
    assert_bit_equal(T.concat_qkv(*T.unconcat_qkv(fused, **_kw(layout))), fused)


# -- gate / up -----------------------------------------------------------------------------------

@_SETTINGS
@given(rows=st.integers(1, 8), rest=trailing_shapes(), dtype=dtypes(), seed=seeds())
def test_split_gate_up_inverts_fuse_gate_up(rows, rest, dtype, seed):
    gate = random_bits((rows, *rest), dtype, seed)
    up = random_bits((rows, *rest), dtype, seed + 1)
    fc1 = T.fuse_gate_up(gate, up)
    for r in range(rows):  # reference: gate rows first, then up rows
        assert_bit_equal(fc1[r], gate[r])
        assert_bit_equal(fc1[rows + r], up[r])
    got_gate, got_up = T.split_gate_up(fc1)
    assert_bit_equal(got_gate, gate)
    assert_bit_equal(got_up, up)


@_SETTINGS
@given(rows=st.integers(1, 8), rest=trailing_shapes(), dtype=dtypes(), seed=seeds())
def test_fuse_gate_up_inverts_split_gate_up(rows, rest, dtype, seed):
    fc1 = random_bits((2 * rows, *rest), dtype, seed)
    assert_bit_equal(T.fuse_gate_up(*T.split_gate_up(fc1)), fc1)


# -- invalid shapes ------------------------------------------------------------------------------

def _check_message(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    msg = str(exc.value)
    missing = [f for f in fragments if f not in msg]
    assert not missing, f"message {msg!r} does not name {missing}"


@_SETTINGS
@given(layout=qkv_layouts(), rest=trailing_shapes(), extra=st.integers(1, 3))
def test_interleave_qkv_rejects_k_with_wrong_group_count(layout, rest, extra):
    hd = layout.head_dim
    q = torch.zeros(layout.num_attention_heads * hd, *rest)
    k = v = torch.zeros((layout.num_query_groups + extra) * hd, *rest)
    with pytest.raises(ValueError) as exc:
        T.interleave_qkv(q, k, v, num_query_groups=layout.num_query_groups, head_dim=hd)
    _check_message(exc, str(k.shape[0]))


@_SETTINGS
@given(layout=qkv_layouts(), rest=trailing_shapes(max_dim=3))
def test_interleave_qkv_rejects_mismatched_k_v_and_names_all_shapes(layout, rest):
    hd = layout.head_dim
    q = torch.zeros(layout.num_attention_heads * hd, *rest)
    k = torch.zeros(layout.num_query_groups * hd, *rest)
    v = torch.zeros(layout.num_query_groups * hd + 1, *rest)
    with pytest.raises(ValueError) as exc:
        T.interleave_qkv(q, k, v, num_query_groups=layout.num_query_groups, head_dim=hd)
    _check_message(exc, str(tuple(q.shape)), str(tuple(k.shape)), str(tuple(v.shape)))


def test_interleave_qkv_rejects_q_rows_not_a_multiple_of_head_dim():
    q, k = torch.zeros(7, 3), torch.zeros(4, 3)
    with pytest.raises(ValueError) as exc:
        T.interleave_qkv(q, k, k, num_query_groups=1, head_dim=4)
    _check_message(exc, "(7, 3)", "(4, 3)")


def test_interleave_qkv_rejects_different_trailing_dims():
    q, k = torch.zeros(4, 3), torch.zeros(2, 5)
    with pytest.raises(ValueError) as exc:
        T.interleave_qkv(q, k, k, num_query_groups=1, head_dim=2)
    _check_message(exc, "(4, 3)", "(2, 5)")


@pytest.mark.parametrize("heads,groups", [(6, 4), (3, 2), (1, 2)])
def test_heads_not_a_multiple_of_groups_are_rejected_with_both_counts(heads, groups):
    with pytest.raises(ValueError) as exc:
        T.split_qkv(torch.zeros(64, 2), num_attention_heads=heads, num_query_groups=groups, head_dim=2)
    _check_message(exc, f"({heads})", f"({groups})")
    with pytest.raises(ValueError) as exc:
        T.unconcat_qkv(torch.zeros(64, 2), num_attention_heads=heads, num_query_groups=groups, head_dim=2)
    _check_message(exc, f"({heads})", f"({groups})")


@pytest.mark.parametrize("heads,groups,head_dim", [(0, 1, 2), (2, 0, 2), (2, 1, 0), (-2, 1, 2)])
def test_non_positive_dimensions_are_rejected(heads, groups, head_dim):
    with pytest.raises(ValueError, match=re.escape(f"num_attention_heads={heads}")):
        T.split_qkv(torch.zeros(8), num_attention_heads=heads, num_query_groups=groups, head_dim=head_dim)


@_SETTINGS
@given(layout=qkv_layouts(), rest=trailing_shapes(), delta=st.integers(-3, 3).filter(bool))
def test_split_qkv_and_unconcat_qkv_reject_wrong_row_counts(layout, rest, delta):
    rows = layout.num_query_groups * (layout.q_per_group + 2) * layout.head_dim + delta
    assume(rows > 0)
    with pytest.raises(ValueError) as exc:
        T.split_qkv(torch.zeros(rows, *rest), **_kw(layout))
    _check_message(exc, str(rows), str(rows - delta))
    with pytest.raises(ValueError) as exc:
        T.unconcat_qkv(torch.zeros(rows, *rest), **_kw(layout))
    _check_message(exc, str(rows), str(rows - delta))


@_SETTINGS
@given(rows=st.integers(1, 6), other=st.integers(1, 6), rest=trailing_shapes(max_dim=3))
def test_fuse_gate_up_rejects_unequal_shapes_naming_both(rows, other, rest):
    if rows == other:
        other += 1
    gate, up = torch.zeros(rows, *rest), torch.zeros(other, *rest)
    with pytest.raises(ValueError) as exc:
        T.fuse_gate_up(gate, up)
    _check_message(exc, str(tuple(gate.shape)), str(tuple(up.shape)))


@pytest.mark.parametrize("rows", [1, 3, 7])
def test_split_gate_up_rejects_odd_rows(rows):
    with pytest.raises(ValueError, match=rf"found {rows}\b"):
        T.split_gate_up(torch.zeros(rows, 2))


# -- shape twins: the planner's arithmetic agrees with the transforms --------------------------------

def _outcome(fn, *args, **kwargs):
    """``("ok", shape)`` or ``("error", message)``: a shape twin and its transform must agree on both."""
    try:
        out = fn(*args, **kwargs)
    except ValueError as exc:
        return "error", str(exc)
    return "ok", tuple(out.shape) if isinstance(out, torch.Tensor) else tuple(out)


def row_counts() -> st.SearchStrategy[int]:
    return st.integers(1, 12)


@_SETTINGS
@given(q_rows=row_counts(), k_rows=row_counts(), v_rows=row_counts(), rest=trailing_shapes(max_dim=3),
       groups=st.integers(1, 4), head_dim=st.integers(1, 4))
def test_interleave_qkv_shape_agrees_with_interleave_qkv_on_any_shapes(q_rows, k_rows, v_rows, rest, groups,
                                                                       head_dim):
    q, k, v = (torch.zeros(rows, *rest) for rows in (q_rows, k_rows, v_rows))
    kw = dict(num_query_groups=groups, head_dim=head_dim)
    assert _outcome(T.interleave_qkv_shape, q.shape, k.shape, v.shape, **kw) == _outcome(T.interleave_qkv,
                                                                                           q, k, v, **kw)


@_SETTINGS
@given(layout=qkv_layouts(), rest=trailing_shapes(max_dim=3), delta=st.integers(-2, 2))
def test_unconcat_qkv_shapes_agree_with_unconcat_qkv(layout, rest, delta):
    rows = (layout.num_attention_heads + 2 * layout.num_query_groups) * layout.head_dim + delta
    assume(rows > 0)
    fused = torch.zeros(rows, *rest)
    twin = _outcome(lambda: T.unconcat_qkv_shapes(fused.shape, **_kw(layout)))
    real = _outcome(lambda: tuple(tuple(t.shape) for t in T.unconcat_qkv(fused, **_kw(layout))))
    assert twin == real


@_SETTINGS
@given(gate=st.tuples(row_counts()) | st.tuples(row_counts(), row_counts()),
       up=st.tuples(row_counts()) | st.tuples(row_counts(), row_counts()))
def test_fuse_gate_up_shape_agrees_with_fuse_gate_up(gate, up):
    assert _outcome(T.fuse_gate_up_shape, gate, up) == _outcome(T.fuse_gate_up, torch.zeros(gate),
                                                                torch.zeros(up))


@_SETTINGS
@given(layout=qkv_layouts(), rest=trailing_shapes(max_dim=3))
def test_interleave_qkv_shape_is_the_fused_shape_for_valid_layouts(layout, rest):
    q, k, v = _qkv_inputs(layout, rest, torch.float32, 0)
    kw = dict(num_query_groups=layout.num_query_groups, head_dim=layout.head_dim)
    assert T.interleave_qkv_shape(q.shape, k.shape, v.shape, **kw) == tuple(T.interleave_qkv(q, k, v, **kw).shape)
