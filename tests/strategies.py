"""Shared Hypothesis strategies: dtypes, tensors, small GPT architectures, parallel layouts.

Every strategy shrinks toward small, readable cases (``st.sampled_from`` lists small values
first). Tensors are random *bit patterns* (NaNs, infinities and subnormals included) so that
round-trip properties are checked bit for bit.

Typical use::

    @given(arch_and_layout=architectures().flatmap(lambda a: layouts(a).map(lambda lay: (a, lay))))
    def test_...(arch_and_layout): ...

or :func:`architectures_and_layouts`. :func:`megatron_state` builds the full Megatron GPT state
(global names, unsharded tensors) and the sharding kind of each parameter for an architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st

from bridge.parallel import ParamSpec, PipelineLayout

__all__ = [
    "FLOAT_DTYPES",
    "Architecture",
    "Layout",
    "architectures",
    "architectures_and_layouts",
    "dtypes",
    "layouts",
    "megatron_state",
    "random_bits",
    "shapes",
    "tensors",
]

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
PARALLEL_SIZES = (1, 2, 4, 8)
_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def dtypes() -> st.SearchStrategy[torch.dtype]:
    """float32, bfloat16 or float16 (float32 first)."""
    return st.sampled_from(FLOAT_DTYPES)


def random_bits(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """A tensor of ``shape`` whose every element is a uniformly random bit pattern of ``dtype``."""
    gen = torch.Generator().manual_seed(seed)
    int_dtype = _INT_OF_SIZE[torch.empty((), dtype=dtype).element_size()]
    info = torch.iinfo(int_dtype)
    raw = torch.randint(info.min, info.max, shape, dtype=int_dtype, generator=gen)
    return raw.view(dtype)


def shapes(
    *, min_dims: int = 1, max_dims: int = 3, max_side: int = 6
) -> st.SearchStrategy[tuple[int, ...]]:
    """Tensor shapes with ``min_dims..max_dims`` dimensions of size ``1..max_side``."""
    return st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


@st.composite
def tensors(
    draw: st.DrawFn,
    *,
    shape: tuple[int, ...] | None = None,
    min_dims: int = 1,
    max_dims: int = 3,
    max_side: int = 6,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Random-bit tensors of a given or drawn shape and dtype."""
    if shape is None:
        shape = draw(shapes(min_dims=min_dims, max_dims=max_dims, max_side=max_side))
    if dtype is None:
        dtype = draw(dtypes())
    return random_bits(shape, dtype, draw(st.integers(0, 2**16)))


@dataclass(frozen=True)
class Architecture:
    """A small Megatron GPT (local spec names), enough to exercise every dense sharding kind."""

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    head_dim: int
    ffn_hidden_size: int
    vocab_size: int
    make_vocab_size_divisible_by: int
    tied: bool
    gated: bool
    bias: bool


@st.composite
def architectures(
    draw: st.DrawFn,
    *,
    max_layers: int = 8,
    max_heads: int = 8,
    max_vocab: int = 300,
) -> Architecture:
    """Small GPT architectures: 1..``max_layers`` layers, GQA/MHA/MQA, gated or not, tied or not."""
    heads = draw(st.sampled_from([h for h in (1, 2, 4, 8) if h <= max_heads]))
    return Architecture(
        num_layers=draw(st.integers(1, max_layers)),
        hidden_size=draw(st.sampled_from((4, 8, 16))),
        num_attention_heads=heads,
        num_query_groups=draw(st.sampled_from([g for g in (1, 2, 4, 8) if heads % g == 0])),
        head_dim=draw(st.sampled_from((2, 4))),
        ffn_hidden_size=draw(st.sampled_from((8, 16, 4, 12, 24))),
        vocab_size=draw(st.integers(1, max_vocab)),
        make_vocab_size_divisible_by=draw(st.sampled_from((1, 8, 128))),
        tied=draw(st.booleans()),
        gated=draw(st.booleans()),
        bias=draw(st.booleans()),
    )


@dataclass(frozen=True)
class Layout:
    """A TP x PP choice; ``first_stage_layers`` / ``last_stage_layers`` as in MCore."""

    tp: int
    pp: int
    first_stage_layers: int | None = None
    last_stage_layers: int | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``split_full_state`` / ``merge_shards`` / ``reshard``."""
        return {
            "tp": self.tp,
            "pp": self.pp,
            "first_stage_layers": self.first_stage_layers,
            "last_stage_layers": self.last_stage_layers,
        }

    def pipeline(self, num_layers: int) -> PipelineLayout:
        """The :class:`PipelineLayout` of this choice for ``num_layers``."""
        return PipelineLayout(num_layers, self.pp, self.first_stage_layers, self.last_stage_layers)


def valid_tps(arch: Architecture, *, max_tp: int = 8) -> list[int]:
    """TP sizes that fit ``arch``: they divide num_query_groups and ffn_hidden_size."""
    return [
        tp for tp in PARALLEL_SIZES
        if tp <= max_tp and arch.num_query_groups % tp == 0 and arch.ffn_hidden_size % tp == 0
    ]  # fmt: skip


@st.composite
def layouts(draw: st.DrawFn, arch: Architecture, *, max_tp: int = 8, max_pp: int = 8) -> Layout:
    """Valid layouts for ``arch``: TP and PP from {1, 2, 4, 8}, even or uneven first/last stages."""
    tp = draw(st.sampled_from(valid_tps(arch, max_tp=max_tp)))
    n = arch.num_layers
    pp = draw(st.sampled_from([p for p in PARALLEL_SIZES if p <= min(max_pp, n)]))
    if pp == 1:
        return Layout(tp, 1)
    modes = (["even"] if n % pp == 0 else []) + ["first", "last", "both"]
    mode = draw(st.sampled_from(modes))
    if mode == "even":
        return Layout(tp, pp)
    fixed = 2 if mode == "both" else 1
    middle = pp - fixed
    # each middle stage gets k >= 1 layers; the overrides share the rest, at least one each
    max_k = (n - fixed) // middle if middle else 0
    k = draw(st.integers(1, max_k)) if middle else 0
    rest = n - middle * k
    if mode == "first":
        return Layout(tp, pp, first_stage_layers=rest)
    if mode == "last":
        return Layout(tp, pp, last_stage_layers=rest)
    first = draw(st.integers(1, rest - 1))
    return Layout(tp, pp, first_stage_layers=first, last_stage_layers=rest - first)


def architectures_and_layouts(**bounds: int) -> st.SearchStrategy[tuple[Architecture, Layout]]:
    """``(arch, layout)`` pairs; ``bounds`` go to :func:`architectures` (``max_tp``/``max_pp`` to layouts)."""
    layout_bounds = {k: bounds.pop(k) for k in ("max_tp", "max_pp") if k in bounds}
    return architectures(**bounds).flatmap(
        lambda a: layouts(a, **layout_bounds).map(lambda lay: (a, lay))
    )


def megatron_state(
    arch: Architecture, *, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, ParamSpec]]:
    """The full Megatron GPT state of ``arch`` (random bits) and each parameter's sharding spec."""
    h, d, f = arch.hidden_size, arch.head_dim, arch.ffn_hidden_size
    qkv_rows = (arch.num_attention_heads + 2 * arch.num_query_groups) * d
    fc1_rows = 2 * f if arch.gated else f
    fc1_kind = "gated" if arch.gated else "column"
    vocab = ParamSpec("vocab", {"divisible_by": arch.make_vocab_size_divisible_by})
    qkv = ParamSpec("qkv", {"num_query_groups": arch.num_query_groups})
    shapes_and_specs: list[tuple[str, tuple[int, ...], ParamSpec]] = [
        ("embedding.word_embeddings.weight", (arch.vocab_size, h), vocab)
    ]
    for i in range(arch.num_layers):
        p = f"decoder.layers.{i}."
        shapes_and_specs += [
            (p + "input_layernorm.weight", (h,), ParamSpec("replicated")),
            (p + "self_attention.linear_qkv.weight", (qkv_rows, h), qkv),
            (
                p + "self_attention.linear_proj.weight",
                (h, arch.num_attention_heads * d),
                ParamSpec("row"),
            ),
            (p + "pre_mlp_layernorm.weight", (h,), ParamSpec("replicated")),
            (p + "mlp.linear_fc1.weight", (fc1_rows, h), ParamSpec(fc1_kind)),
            (p + "mlp.linear_fc2.weight", (h, f), ParamSpec("row")),
        ]
        if arch.bias:
            shapes_and_specs += [
                (p + "self_attention.linear_qkv.bias", (qkv_rows,), qkv),
                (p + "self_attention.linear_proj.bias", (h,), ParamSpec("row")),
                (p + "mlp.linear_fc1.bias", (fc1_rows,), ParamSpec(fc1_kind)),
                (p + "mlp.linear_fc2.bias", (h,), ParamSpec("row")),
            ]
    shapes_and_specs.append(("decoder.final_layernorm.weight", (h,), ParamSpec("replicated")))
    if not arch.tied:
        shapes_and_specs.append(("output_layer.weight", (arch.vocab_size, h), vocab))
    full = {
        name: random_bits(shape, dtype, seed * 1_000_003 + i)
        for i, (name, shape, _) in enumerate(shapes_and_specs)
    }
    return full, {name: spec for name, _, spec in shapes_and_specs}
