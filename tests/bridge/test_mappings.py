"""Mappings: each kind's two directions are inverses; the registry resolves wildcards both ways;
malformed tables are rejected when they are built, with messages that name the culprits."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import MappingError
from bridge.mappings import (
    AutoMapping,
    ColumnParallelMapping,
    ConcatenatedQKVMapping,
    GatedMLPMapping,
    MappingContext,
    MegatronMappingRegistry,
    MegatronParamMapping,
    QKVMapping,
    ReplicatedMapping,
    RowParallelMapping,
    detect_sharding,
)
from bridge.mappings import base as mapping_base
from tests.helpers.megatron_states import family_tables, to_megatron
from tests.strategies import HFArchitecture, hf_state

_SETTINGS = settings(max_examples=40, deadline=None)


# -- strategies ---------------------------------------------------------------------------------

@st.composite
def contexts(draw: st.DrawFn, *, max_groups: int = 4, max_q_per_group: int = 3, max_head_dim: int = 4) -> MappingContext:
    groups = draw(st.integers(1, max_groups))
    heads = groups * draw(st.integers(1, max_q_per_group))
    return MappingContext(num_attention_heads=heads, num_query_groups=groups,
                          head_dim=draw(st.integers(1, max_head_dim)))


def trailing_shapes(*, max_dim: int = 4) -> st.SearchStrategy[tuple[int, ...]]:
    return st.one_of(st.just(()), st.tuples(st.integers(1, max_dim)))


def float_dtypes() -> st.SearchStrategy[torch.dtype]:
    return st.sampled_from([torch.float32, torch.bfloat16, torch.float16, torch.float64])


def indices(*, max_index: int = 200) -> st.SearchStrategy[int]:
    return st.integers(0, max_index)


def _rand(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(dtype)


def _equal_dicts(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


# -- every kind: the two directions are inverses -------------------------------------------------

def _direct(kind: type) -> MegatronParamMapping:
    return kind("decoder.layers.*.mlp.linear_fc1.weight", "model.layers.*.mlp.fc1.weight")


def _hf_tensors(mapping: MegatronParamMapping, ctx: MappingContext, rest: tuple[int, ...], dtype, seed: int):
    hd = ctx.head_dim
    if isinstance(mapping, QKVMapping):
        rows = {"q": ctx.num_attention_heads * hd, "k": ctx.num_query_groups * hd, "v": ctx.num_query_groups * hd}
        return {mapping.hf_param[r]: _rand((n, *rest), dtype, seed + i) for i, (r, n) in enumerate(rows.items())}
    if isinstance(mapping, GatedMLPMapping):
        return {mapping.hf_param[r]: _rand((3, *rest), dtype, seed + i) for i, r in enumerate(("gate", "up"))}
    if isinstance(mapping, ConcatenatedQKVMapping):
        rows = (ctx.num_attention_heads + 2 * ctx.num_query_groups) * hd
        return {mapping.hf_param: _rand((rows, *rest), dtype, seed)}
    return {mapping.hf_param: _rand((5, *rest), dtype, seed)}


def _megatron_tensor(mapping: MegatronParamMapping, ctx: MappingContext, rest, dtype, seed: int) -> torch.Tensor:
    if isinstance(mapping, (QKVMapping, ConcatenatedQKVMapping)):
        rows = ctx.num_query_groups * (ctx.num_attention_heads // ctx.num_query_groups + 2) * ctx.head_dim
    elif isinstance(mapping, GatedMLPMapping):
        rows = 6
    else:
        rows = 5
    return _rand((rows, *rest), dtype, seed)


MAPPINGS = {
    "auto": AutoMapping("decoder.layers.*.self_attention.linear_proj.weight", "model.layers.*.self_attn.o_proj.weight"),
    "column": _direct(ColumnParallelMapping),
    "row": _direct(RowParallelMapping),
    "replicated": _direct(ReplicatedMapping),
    "qkv": QKVMapping("decoder.layers.*.self_attention.linear_qkv.weight", q="model.layers.*.q.weight",
                      k="model.layers.*.k.weight", v="model.layers.*.v.weight"),
    "qkv_concat": ConcatenatedQKVMapping("decoder.layers.*.self_attention.linear_qkv.bias", "blocks.*.attn.qkv.bias"),
    "gated": GatedMLPMapping("decoder.layers.*.mlp.linear_fc1.weight", gate="model.layers.*.mlp.gate_proj.weight",
                             up="model.layers.*.mlp.up_proj.weight"),
}


@pytest.mark.parametrize("kind", sorted(MAPPINGS))
@_SETTINGS
@given(ctx=contexts(), rest=trailing_shapes(), dtype=float_dtypes(), seed=st.integers(0, 10_000), layer=indices())
def test_megatron_to_hf_inverts_hf_to_megatron(kind, ctx, rest, dtype, seed, layer):
    mapping = MAPPINGS[kind].resolve((str(layer),))
    hf = _hf_tensors(mapping, ctx, rest, dtype, seed)
    full = mapping.hf_to_megatron(hf, ctx)
    back = mapping.megatron_to_hf(full, ctx)
    _equal_dicts(back, hf)
    assert sorted(back) == sorted(mapping.hf_names())


@pytest.mark.parametrize("kind", sorted(MAPPINGS))
@_SETTINGS
@given(ctx=contexts(), rest=trailing_shapes(), dtype=float_dtypes(), seed=st.integers(0, 10_000), layer=indices())
def test_hf_to_megatron_inverts_megatron_to_hf(kind, ctx, rest, dtype, seed, layer):
    mapping = MAPPINGS[kind].resolve((str(layer),))
    full = _megatron_tensor(mapping, ctx, rest, dtype, seed)
    again = mapping.hf_to_megatron(mapping.megatron_to_hf(full, ctx), ctx)
    assert again.dtype == full.dtype and torch.equal(again, full)


def test_sharding_of_each_kind():
    assert {k: m.sharding for k, m in MAPPINGS.items()} == {
        "auto": "row", "column": "column", "row": "row", "replicated": "replicated",
        "qkv": "qkv", "qkv_concat": "qkv", "gated": "gated",
    }


# -- the registry: wildcard resolution both ways ------------------------------------------------

def moe_registry() -> MegatronMappingRegistry:
    return MegatronMappingRegistry(
        AutoMapping("embedding.word_embeddings.weight", "model.embed_tokens.weight"),
        AutoMapping("decoder.layers.*.input_layernorm.weight", "model.layers.*.input_layernorm.weight"),
        QKVMapping("decoder.layers.*.self_attention.linear_qkv.weight",
                   q="model.layers.*.self_attn.q_proj.weight", k="model.layers.*.self_attn.k_proj.weight",
                   v="model.layers.*.self_attn.v_proj.weight"),
        GatedMLPMapping("decoder.layers.*.mlp.experts.local_experts.*.linear_fc1.weight",
                        gate="model.layers.*.mlp.experts.*.gate_proj.weight",
                        up="model.layers.*.mlp.experts.*.up_proj.weight"),
        AutoMapping("decoder.layers.*.mlp.experts.local_experts.*.linear_fc2.weight",
                    "model.layers.*.mlp.experts.*.down_proj.weight"),
        AutoMapping("decoder.final_layernorm.weight", "model.norm.weight"),
    )


@_SETTINGS
@given(layer=indices(), expert=indices())
def test_two_wildcards_resolve_layer_and_expert_both_ways(layer, expert):
    reg = moe_registry()
    meg = f"decoder.layers.{layer}.mlp.experts.local_experts.{expert}.linear_fc1.weight"
    gate = f"model.layers.{layer}.mlp.experts.{expert}.gate_proj.weight"
    up = f"model.layers.{layer}.mlp.experts.{expert}.up_proj.weight"
    m = reg.megatron_to_hf_lookup(meg)
    assert isinstance(m, GatedMLPMapping)
    assert (m.megatron_param, m.hf_param) == (meg, {"gate": gate, "up": up})
    for hf in (gate, up):
        r = reg.hf_to_megatron_lookup(hf)
        assert r is not None and (r.megatron_param, r.hf_param) == (meg, {"gate": gate, "up": up})
    down = reg.hf_to_megatron_lookup(f"model.layers.{layer}.mlp.experts.{expert}.down_proj.weight")
    assert down.megatron_param == f"decoder.layers.{layer}.mlp.experts.local_experts.{expert}.linear_fc2.weight"


@_SETTINGS
@given(layer=indices())
def test_layer_wildcard_resolves_every_qkv_name(layer):
    reg = moe_registry()
    meg = f"decoder.layers.{layer}.self_attention.linear_qkv.weight"
    names = {r: f"model.layers.{layer}.self_attn.{r}_proj.weight" for r in "qkv"}
    assert reg.megatron_to_hf_lookup(meg).hf_param == names
    for hf in names.values():
        assert reg.hf_to_megatron_lookup(hf).megatron_param == meg
    # resolution leaves the table's own pattern untouched
    assert reg.megatron_to_hf_lookup(meg.replace(str(layer), str(layer + 1), 1)).hf_param != names


def test_exact_names_resolve_to_themselves():
    reg = moe_registry()
    m = reg.megatron_to_hf_lookup("decoder.final_layernorm.weight")
    assert m.hf_param == "model.norm.weight"
    assert reg.hf_to_megatron_lookup("model.embed_tokens.weight").megatron_param == "embedding.word_embeddings.weight"


@pytest.mark.parametrize("name", [
    "decoder.layers.x.input_layernorm.weight",          # not an integer
    "decoder.layers.-1.input_layernorm.weight",         # not a non-negative integer
    "decoder.layers.0.input_layernorm.weight.extra",    # anchored at the end
    "prefix.decoder.layers.0.input_layernorm.weight",   # anchored at the start
    "decoder.layers.0.input_layernormXweight",          # '.' is literal, not a regex dot
    "decoder.layers.0.mlp.experts.local_experts.linear_fc1.weight",  # a wildcard left out
    "decoder.layers..input_layernorm.weight",           # empty index
    "output_layer.weight",                              # simply not in the table
])
def test_unmapped_megatron_names_give_none(name):
    assert moe_registry().megatron_to_hf_lookup(name) is None


@pytest.mark.parametrize("name", [
    "model.layers.x.input_layernorm.weight", "lm_head.weight", "model.layers.0.input_layernorm.weight.bak",
    "model.layers.0.mlp.experts.gate_proj.weight", "model.norm.bias",
])
def test_unmapped_hf_names_give_none(name):
    assert moe_registry().hf_to_megatron_lookup(name) is None


def _override_tables():
    pattern = ReplicatedMapping("decoder.layers.*.norm.weight", "model.layers.*.norm.weight")
    exact = ReplicatedMapping("decoder.layers.3.norm.weight", "model.layers.3.special_norm.weight")
    return pattern, exact


@pytest.mark.parametrize("order", ["pattern-first", "exact-first"])
def test_exact_megatron_name_beats_pattern_in_any_order(order):
    pattern, exact = _override_tables()
    reg = MegatronMappingRegistry(*((pattern, exact) if order == "pattern-first" else (exact, pattern)))
    assert reg.megatron_to_hf_lookup("decoder.layers.3.norm.weight").hf_param == "model.layers.3.special_norm.weight"
    assert reg.megatron_to_hf_lookup("decoder.layers.2.norm.weight").hf_param == "model.layers.2.norm.weight"


@pytest.mark.parametrize("order", ["pattern-first", "exact-first"])
def test_exact_hf_name_beats_pattern_in_any_order(order):
    pattern = ReplicatedMapping("decoder.layers.*.a.weight", "model.layers.*.w")
    exact = ReplicatedMapping("decoder.extra.weight", "model.layers.0.w")
    reg = MegatronMappingRegistry(*((pattern, exact) if order == "pattern-first" else (exact, pattern)))
    assert reg.hf_to_megatron_lookup("model.layers.0.w").megatron_param == "decoder.extra.weight"
    assert reg.hf_to_megatron_lookup("model.layers.1.w").megatron_param == "decoder.layers.1.a.weight"


@pytest.mark.parametrize("order", ["pattern-first", "exact-first"])
def test_hf_lookup_agrees_with_megatron_lookup_when_an_exact_name_overrides_a_pattern(order):
    """Layer 3's norm is read from ``special_norm``: its plain ``norm`` tensor feeds nothing."""
    pattern, exact = _override_tables()
    reg = MegatronMappingRegistry(*((pattern, exact) if order == "pattern-first" else (exact, pattern)))
    assert reg.hf_to_megatron_lookup("model.layers.3.special_norm.weight").megatron_param == "decoder.layers.3.norm.weight"
    assert reg.hf_to_megatron_lookup("model.layers.2.norm.weight").megatron_param == "decoder.layers.2.norm.weight"
    assert reg.hf_to_megatron_lookup("model.layers.3.norm.weight") is None


# -- malformed tables are rejected at construction -----------------------------------------------

@pytest.mark.parametrize("make, patterns", [
    (lambda: AutoMapping("decoder.layers.*.input_layernorm.weight", "model.norm.weight"),
     ["decoder.layers.*.input_layernorm.weight", "model.norm.weight"]),
    (lambda: AutoMapping("decoder.final_layernorm.weight", "model.layers.*.norm.weight"),
     ["decoder.final_layernorm.weight", "model.layers.*.norm.weight"]),
    (lambda: RowParallelMapping("decoder.layers.*.mlp.experts.local_experts.*.linear_fc2.weight",
                                "model.layers.*.mlp.down_proj.weight"),
     ["decoder.layers.*.mlp.experts.local_experts.*.linear_fc2.weight", "model.layers.*.mlp.down_proj.weight"]),
    (lambda: QKVMapping("decoder.layers.*.self_attention.linear_qkv.weight", q="model.layers.*.q.weight",
                        k="model.k.weight", v="model.layers.*.v.weight"),
     ["decoder.layers.*.self_attention.linear_qkv.weight", "model.k.weight"]),
    (lambda: GatedMLPMapping("decoder.layers.*.mlp.linear_fc1.weight", gate="model.layers.*.gate.weight",
                             up="model.layers.*.*.up.weight"),
     ["decoder.layers.*.mlp.linear_fc1.weight", "model.layers.*.*.up.weight"]),
    (lambda: ConcatenatedQKVMapping("decoder.layers.*.self_attention.linear_qkv.weight", "qkv.weight"),
     ["decoder.layers.*.self_attention.linear_qkv.weight", "qkv.weight"]),
])
def test_wildcard_count_mismatch_is_rejected_at_construction_naming_both_patterns(make, patterns):
    with pytest.raises(MappingError) as exc:
        make()
    for p in patterns:
        assert repr(p) in str(exc.value), (p, str(exc.value))


def test_duplicate_megatron_names_are_rejected():
    a = AutoMapping("decoder.layers.*.input_layernorm.weight", "model.layers.*.input_layernorm.weight")
    b = AutoMapping("decoder.layers.*.input_layernorm.weight", "model.layers.*.ln1.weight")
    with pytest.raises(MappingError, match=r"decoder\.layers\.\*\.input_layernorm\.weight"):
        MegatronMappingRegistry(a, b)
    reg = MegatronMappingRegistry(a)
    with pytest.raises(MappingError):
        reg.with_mappings([b])
    assert len(reg) == 1  # the original is untouched


def test_with_mappings_returns_a_new_registry():
    reg = moe_registry()
    extra = AutoMapping("output_layer.weight", "lm_head.weight")
    bigger = reg.with_mappings([extra])
    assert len(bigger) == len(reg) + 1 and list(bigger)[-1] is extra
    assert reg.megatron_to_hf_lookup("output_layer.weight") is None
    assert bigger.megatron_to_hf_lookup("output_layer.weight") is extra


@pytest.mark.parametrize("entry", ["decoder.x.weight", None, ("a", "b")])
def test_registry_accepts_only_mappings(entry):
    with pytest.raises(MappingError, match="MegatronParamMapping"):
        MegatronMappingRegistry(AutoMapping("decoder.final_layernorm.weight", "model.norm.weight"), entry)


@pytest.mark.parametrize("make", [
    lambda: AutoMapping("", "model.norm.weight"),
    lambda: AutoMapping("decoder.final_layernorm.weight", ""),
    lambda: AutoMapping("decoder.final_layernorm.weight", {"a": "model.norm.weight"}),
    lambda: ConcatenatedQKVMapping("decoder.layers.*.self_attention.linear_qkv.weight", {"q": "x.*"}),
])
def test_empty_or_wrongly_typed_names_are_mapping_errors(make):
    with pytest.raises(MappingError):
        make()


@pytest.mark.parametrize("make", [
    lambda: AutoMapping(None, "model.norm.weight"),
    lambda: AutoMapping("decoder.final_layernorm.weight", None),
    lambda: QKVMapping("decoder.layers.*.self_attention.linear_qkv.weight", q=None, k="k.*", v="v.*"),
    lambda: GatedMLPMapping("decoder.layers.*.mlp.linear_fc1.weight", gate="g.*", up=3),
])
def test_non_string_names_are_mapping_errors(make):
    with pytest.raises(MappingError):
        make()


# -- sharding detection --------------------------------------------------------------------------

@pytest.mark.parametrize("suffix, kind", mapping_base._SHARDING_BY_SUFFIX)
def test_every_suffix_in_the_table_detects_its_own_kind(suffix, kind):
    """No earlier entry shadows a later one with a different kind."""
    assert detect_sharding(f"decoder.layers.7.some_module.{suffix}") == kind
    assert detect_sharding(suffix) == kind


# -- the table against MCore: tiny models built with the local spec, read back ------------------

#: Transformer Engine's fused norm + linear (``TELayerNormColumnParallelLinear``) keeps the norm's
#: weight and bias unsplit on every rank; the local spec, the only one that builds on CPU, has none.
TE_ONLY_SUFFIXES = {"layer_norm_weight", "layer_norm_bias"}

#: A vocabulary (not padded: should_pad_vocab is off) that no other dimension of the tiny models reaches.
_VOCAB = 100


def _tiny_models() -> dict[str, tuple[HFArchitecture, dict[str, object]]]:
    mla = dict(num_experts=2, moe_intermediate_size=4, kv_lora_rank=4, qk_rope_head_dim=2)
    return {
        # standard attention with QKV/proj/MLP biases, LayerNorm (with biases), QK norms, plain
        # (non-gated) MLPs: a dense layer and a MoE layer with a biased router
        "gqa_bias_moe": (
            HFArchitecture("qwen3_moe", 2, 16, 4, 2, 4, 32, _VOCAB, 128, tied=False, num_experts=2,
                           moe_intermediate_size=8, dense_layers=(0,)),
            {"add_bias_linear": True, "normalization": "LayerNorm", "gated_linear_unit": False,
             "activation": "gelu"},
        ),
        # MLA with the query LoRA, shared experts and the router's expert bias (a buffer)
        "mla_q_lora": (HFArchitecture("deepseek_v3", 2, 16, 4, 4, 4, 32, _VOCAB, 128, tied=False,
                                      dense_layers=(0,), q_lora_rank=8, **mla), {}),
        # MLA without it (linear_q_proj)
        "mla": (HFArchitecture("deepseek_v3", 1, 16, 4, 4, 4, 32, _VOCAB, 128, tied=False, **mla), {}),
    }  # fmt: skip


@pytest.fixture(scope="module")
def mcore_models() -> dict[str, tuple[HFArchitecture, torch.nn.Module]]:
    """Each tiny model built by MCore (TP = PP = 1) from the family's own provider."""
    from bridge.registry import bridge_for_architectures
    from bridge.runtime import reset_model_parallel

    out = {}
    for key, (arch, fields) in _tiny_models().items():
        config = arch.hf_config()
        provider = bridge_for_architectures(config.architectures)().provider_bridge(config)
        for field, value in fields.items():
            setattr(provider, field, value)
        reset_model_parallel()
        (model,) = provider.provide_distributed_model(wrap_with_ddp=False)
        out[key] = (arch, model)
    reset_model_parallel()
    return out


def _checkpoint_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers (what a checkpoint holds), with MCore's TP attributes."""
    saved = set(model.state_dict())
    return {n: t for n, t in (*model.named_parameters(), *model.named_buffers()) if n in saved}


def mcore_sharding(model: torch.nn.Module, name: str, tensor: torch.Tensor) -> str:
    """How MCore splits ``tensor`` across TP ranks, read from what its layers set.

    ``tensor_model_parallel``/``partition_dim`` (``set_tensor_model_parallel_attributes``) give
    replicated / column (dim 0) / row (dim 1); ``partition_stride`` 2 marks a GLU's [gate; up]
    fc1; the padded vocabulary on dim 0 marks the embedding and output layer; the fused QKV is
    the ``linear_qkv`` of an attention module.
    """
    from megatron.core.transformer.attention import Attention

    if not getattr(tensor, "tensor_model_parallel", False):
        return "replicated"
    if tensor.partition_dim == 1:
        return "row"
    assert tensor.partition_dim == 0, (name, tensor.partition_dim)
    if tensor.shape[0] == model.vocab_size:
        return "vocab"
    if getattr(tensor, "partition_stride", 1) == 2:
        return "gated"
    owner, _, _ = name.rpartition(".")
    parent, _, attr = owner.rpartition(".")
    if attr == "linear_qkv" and isinstance(model.get_submodule(parent), Attention):
        return "qkv"
    return "column"


def _first_suffix(name: str) -> str:
    return next(suffix for suffix, _ in mapping_base._SHARDING_BY_SUFFIX if name.endswith(suffix))


def test_the_sharding_table_says_what_mcore_does(mcore_models) -> None:
    """Every name MCore builds gets MCore's own split from the table (a GLU's fc1 excepted: the
    name cannot tell a gated MLP, whose mapping says "gated" explicitly; see the next test)."""
    hit: set[str] = set()
    kinds: set[tuple[str, str]] = set()
    for _, model in mcore_models.values():
        for name, tensor in _checkpoint_tensors(model).items():
            found, expected = detect_sharding(name), mcore_sharding(model, name, tensor)
            kinds.add((_first_suffix(name), expected))
            if expected == "gated":
                assert found == "column" and ".linear_fc1." in name, name
            else:
                assert found == expected, (name, found, expected)
            hit.add(_first_suffix(name))
    table = {suffix for suffix, _ in mapping_base._SHARDING_BY_SUFFIX}
    assert table - hit == {s for s in table if s.endswith(tuple(TE_ONLY_SUFFIXES))}
    # the plain MLP's fc1 was among them, column-split
    assert ("linear_fc1.weight", "column") in kinds and ("linear_fc1.bias", "column") in kinds


def test_family_tables_shard_what_they_map_as_mcore_does(mcore_models) -> None:
    """The DeepSeek-V3 table maps every tensor of its models, each with MCore's split; and the
    HF -> Megatron direction the composed round trip uses yields exactly these names."""
    for key in ("mla_q_lora", "mla"):
        arch, model = mcore_models[key]
        registry, ctx = family_tables(arch)
        built = _checkpoint_tensors(model)
        for name, tensor in built.items():
            mapping = registry.megatron_to_hf_lookup(name)
            assert mapping is not None, name
            assert mapping.sharding == mcore_sharding(model, name, tensor), name
        full, _ = to_megatron(hf_state(arch), registry, ctx)
        assert sorted(full) == sorted(built)
        assert all(tuple(full[n].shape) == tuple(built[n].shape) for n in full if n not in (
            "embedding.word_embeddings.weight", "output_layer.weight"))


@pytest.mark.parametrize("name", ["decoder.layers.0.mystery.weight", "embedding.position_embeddings.weight", "x"])
def test_unknown_suffix_is_a_helpful_error(name):
    with pytest.raises(MappingError) as exc:
        detect_sharding(name)
    msg = str(exc.value)
    assert repr(name) in msg and "ColumnParallelMapping" in msg and "linear_fc1.weight" in msg
    with pytest.raises(MappingError):
        AutoMapping(name, "hf.weight")
    assert ReplicatedMapping(name, "hf.weight").sharding == "replicated"  # saying it explicitly works


# -- fuzz: random patterns are accepted or refused with MappingError, nothing else ---------------

def pattern_texts(*, max_size: int = 24) -> st.SearchStrategy[str]:
    return st.text(alphabet="ab._*0129()[]+?\\^$|{}-", max_size=max_size)


_BUILDERS = {
    "auto": lambda m, h: AutoMapping(m, h[0]),
    "replicated": lambda m, h: ReplicatedMapping(m, h[0]),
    "column": lambda m, h: ColumnParallelMapping(m, h[0]),
    "concat": lambda m, h: ConcatenatedQKVMapping(m, h[0]),
    "qkv": lambda m, h: QKVMapping(m, q=h[0], k=h[1], v=h[2]),
    "gated": lambda m, h: GatedMLPMapping(m, gate=h[0], up=h[1]),
}


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(_BUILDERS)), meg=pattern_texts(),
       suffix=st.sampled_from(["", ".linear_fc1.weight"]), hf=st.lists(pattern_texts(), min_size=3, max_size=3))
def test_random_patterns_build_or_raise_mapping_error(kind, meg, suffix, hf):
    meg += suffix
    try:
        mapping = _BUILDERS[kind](meg, hf)
    except MappingError as exc:  # a refusal names the pattern it refused (its text; a '*' may show as an index)
        message = str(exc)
        assert any(all(part in message for part in repr(p)[1:-1].split("*")) for p in (meg, *hf)), message
        return
    n = meg.count("*")
    assert meg and all(h and h.count("*") == n for h in mapping.hf_names())
    caps = ("7",) * n
    resolved = mapping.resolve(caps)
    assert mapping.match_megatron(resolved.megatron_param) == caps
    for name in resolved.hf_names():
        assert mapping.match_hf(name) == caps
    assert MegatronMappingRegistry(mapping).megatron_to_hf_lookup(resolved.megatron_param) is not None


def segmented_patterns(*, max_segments: int = 5):
    """Dotted names whose segments are words or ``*`` (wildcards never touch each other)."""
    return st.lists(st.one_of(st.just("*"), st.from_regex(r"[a-z_]{1,6}", fullmatch=True)),
                    min_size=1, max_size=max_segments)


@_SETTINGS
@given(segments=segmented_patterns(), data=st.data())
def test_resolve_then_match_recovers_the_indices(segments, data):
    meg = ".".join(segments) + ".linear_fc1.weight"
    hf = "hf." + ".".join(reversed(segments)) + ".w"
    mapping = AutoMapping(meg, hf)
    caps = tuple(str(data.draw(indices(max_index=10_000))) for _ in range(meg.count("*")))
    resolved = mapping.resolve(caps)
    assert "*" not in resolved.megatron_param + resolved.hf_param
    assert mapping.match_megatron(resolved.megatron_param) == caps
    assert mapping.match_hf(resolved.hf_param) == caps
    reg = MegatronMappingRegistry(mapping)
    assert reg.megatron_to_hf_lookup(resolved.megatron_param).hf_param == resolved.hf_param
    assert reg.hf_to_megatron_lookup(resolved.hf_param).megatron_param == resolved.megatron_param
