"""Shared Hypothesis strategies: dtypes, tensors, small GPT architectures, parallel layouts.

Every strategy shrinks toward small, readable cases (``st.sampled_from`` lists small values
first). Tensors are random *bit patterns* (NaNs, infinities and subnormals included) so that
round-trip properties are checked bit for bit.

Typical use::

    @given(arch_and_layout=architectures().flatmap(lambda a: layouts(a).map(lambda lay: (a, lay))))
    def test_...(arch_and_layout): ...

or :func:`architectures_and_layouts`. :func:`megatron_state` builds the full Megatron GPT state
(global names, unsharded tensors) and the sharding kind of each parameter for an architecture;
:func:`hf_architectures` and :func:`hf_state` do the same for HF checkpoints of bridged families.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from hypothesis import strategies as st

from bridge.parallel import ParamSpec, PipelineLayout

__all__ = [
    "FLOAT_DTYPES",
    "HF_FAMILIES",
    "Architecture",
    "HFArchitecture",
    "Layout",
    "architectures",
    "architectures_and_layouts",
    "dtypes",
    "hf_architectures",
    "hf_state",
    "layouts",
    "megatron_state",
    "parallel_layouts",
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
        hidden_size=heads * draw(st.sampled_from((1, 2, 4))),  # HF: a multiple of the heads
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


def layouts(arch: Architecture, *, max_tp: int = 8, max_pp: int = 8) -> st.SearchStrategy[Layout]:
    """Valid layouts for ``arch``: TP and PP from {1, 2, 4, 8}, even or uneven first/last stages."""
    return parallel_layouts(
        num_layers=arch.num_layers, tps=valid_tps(arch, max_tp=max_tp), max_pp=max_pp
    )


@st.composite
def parallel_layouts(
    draw: st.DrawFn, *, num_layers: int, tps: Sequence[int], max_pp: int = 8
) -> Layout:
    """Layouts of ``num_layers`` layers: TP from ``tps``, PP from {1, 2, 4, 8} (at most one layer
    a stage), split evenly or with MCore's first/last-stage overrides. Shrinks toward TP = PP = 1."""
    tp = draw(st.sampled_from(sorted(tps)))
    n = num_layers
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


# --- HF checkpoints of the bridged families -----------------------------------------------------

#: Families :func:`hf_architectures` draws from: dense GQA, QKV bias, MoE with QK norms, MLA + MoE.
HF_FAMILIES = ("llama", "qwen2", "qwen3_moe", "deepseek_v3")
_HF_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
               "qwen3_moe": "Qwen3MoeForCausalLM", "deepseek_v3": "DeepseekV3ForCausalLM"}  # fmt: skip


@dataclass(frozen=True)
class HFArchitecture:
    """A small decoder of one bridged family, as its HF config describes it.

    ``head_dim`` is also MLA's ``qk_nope_head_dim`` and ``v_head_dim``; ``dense_layers`` are the
    MoE families' layers with a dense MLP (Qwen3-MoE ``mlp_only_layers``; DeepSeek-V3's first
    ``first_k_dense_replace`` layers).
    """

    family: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    make_vocab_size_divisible_by: int
    tied: bool
    num_experts: int = 0
    moe_intermediate_size: int = 0
    dense_layers: tuple[int, ...] = ()
    q_lora_rank: int | None = None
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0

    def tp_dims(self) -> dict[str, int]:
        """MCore's TP rules, written out: every TP rank holds an equal part of each of these."""
        dims = {"num_query_groups": self.num_key_value_heads, "ffn_hidden_size": self.intermediate_size}
        if self.num_experts:
            dims["moe_ffn_hidden_size"] = self.moe_intermediate_size
        if self.family == "deepseek_v3":
            dims["num_attention_heads"] = self.num_attention_heads
            dims["kv_lora_rank + qk_rope_head_dim"] = self.kv_lora_rank + self.qk_rope_head_dim
            if self.q_lora_rank is not None:
                dims["q_lora_rank"] = self.q_lora_rank
        return dims

    def valid_tps(self) -> list[int]:
        """TP sizes from {1, 2, 4, 8} that divide every :meth:`tp_dims` entry."""
        return [tp for tp in PARALLEL_SIZES if all(d % tp == 0 for d in self.tp_dims().values())]

    def hf_config(self) -> Any:
        """The transformers config of this architecture."""
        from transformers import AutoConfig

        common = dict(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_attention_heads, num_key_value_heads=self.num_key_value_heads,
            tie_word_embeddings=self.tied, max_position_embeddings=64,
            architectures=[_HF_CLASSES[self.family]],
            bos_token_id=None, eos_token_id=None, pad_token_id=None,
        )  # fmt: skip
        if self.family in ("llama", "qwen2"):
            return AutoConfig.for_model(self.family, head_dim=self.head_dim, **common)
        topk = min(2, self.num_experts)
        if self.family == "qwen3_moe":
            return AutoConfig.for_model(
                "qwen3_moe", head_dim=self.head_dim, num_experts=self.num_experts,
                num_experts_per_tok=topk, norm_topk_prob=topk > 1,
                moe_intermediate_size=self.moe_intermediate_size,
                mlp_only_layers=list(self.dense_layers), **common,
            )  # fmt: skip
        return AutoConfig.for_model(
            "deepseek_v3", q_lora_rank=self.q_lora_rank, kv_lora_rank=self.kv_lora_rank,
            qk_nope_head_dim=self.head_dim, qk_rope_head_dim=self.qk_rope_head_dim,
            v_head_dim=self.head_dim, n_routed_experts=self.num_experts, num_experts_per_tok=topk,
            norm_topk_prob=topk > 1, n_shared_experts=1, n_group=1, topk_group=1,
            moe_intermediate_size=self.moe_intermediate_size,
            first_k_dense_replace=len(self.dense_layers), **common,
        )  # fmt: skip


@st.composite
def hf_architectures(
    draw: st.DrawFn,
    *,
    families: Sequence[str] = HF_FAMILIES,
    max_layers: int = 4,
    max_experts: int = 4,
    max_vocab: int = 300,
) -> HFArchitecture:
    """Small architectures of the bridged ``families``: GQA/MHA/MQA, tied or not, MoE with dense
    layers mixed in, MLA with and without the query LoRA; every size shrinks toward the smallest."""
    family = draw(st.sampled_from(list(families)))
    heads = draw(st.sampled_from((1, 2, 4, 8)))
    mla = family == "deepseek_v3"
    groups = heads if mla else draw(st.sampled_from([g for g in (1, 2, 4, 8) if heads % g == 0]))
    num_layers = draw(st.integers(1, max_layers))
    arch = HFArchitecture(
        family=family,
        num_layers=num_layers,
        hidden_size=heads * draw(st.sampled_from((1, 2, 4))),  # HF: a multiple of the heads
        num_attention_heads=heads,
        num_key_value_heads=groups,
        head_dim=draw(st.sampled_from((2, 4))),
        intermediate_size=draw(st.sampled_from((4, 8, 12, 16))),
        vocab_size=draw(st.integers(1, max_vocab)),
        make_vocab_size_divisible_by=draw(st.sampled_from((1, 8, 128))),
        tied=draw(st.booleans()),
    )
    if family in ("llama", "qwen2"):
        return arch
    experts = draw(st.integers(1, max_experts))
    moe = dict(num_experts=experts, moe_intermediate_size=draw(st.sampled_from((4, 8, 12))))
    if family == "qwen3_moe":  # any layers dense, but at least one MoE layer
        dense = draw(st.sets(st.integers(0, num_layers - 1), max_size=num_layers - 1))
        return replace(arch, **moe, dense_layers=tuple(sorted(dense)))
    first_dense = draw(st.integers(0, num_layers - 1))
    return replace(
        arch, **moe, dense_layers=tuple(range(first_dense)),
        q_lora_rank=draw(st.sampled_from((None, 4, 8))),
        kv_lora_rank=draw(st.sampled_from((4, 8))), qk_rope_head_dim=draw(st.sampled_from((2, 4))),
    )  # fmt: skip


def hf_state(
    arch: HFArchitecture, *, dtype: torch.dtype = torch.float32, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The tensors ``save_pretrained`` writes for ``arch``, filled with random bits.

    Names and shapes come from transformers itself: its model built on the meta device, tied
    weights removed and in-memory weight conversions (fused experts) reverted, as on save.
    """
    from transformers import AutoModelForCausalLM
    from transformers.core_model_loading import revert_weight_conversion
    from transformers.modeling_utils import remove_tied_weights_from_state_dict

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(arch.hf_config())
    state = remove_tied_weights_from_state_dict(model.state_dict(), model)
    state = revert_weight_conversion(model, state)
    return {
        name: random_bits(tuple(meta.shape), dtype, seed * 1_000_003 + i)
        for i, (name, meta) in enumerate(sorted(state.items()))
    }
