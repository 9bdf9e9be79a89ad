"""``bridge.mappings.experts``: each transform pair is inverse both ways, bit for bit, for any shape and dtype
(Hypothesis); :class:`StackedExpertMapping` resolves per expert and round-trips every expert of a stacked tensor;
:class:`ExpertStacker` writes each stacked tensor once, whatever the arrival order (an EP rank's experts
arrive as a block), and reports missing experts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import MappingError, WeightMismatchError
from bridge.mappings import AutoMapping, MappingContext, MegatronMappingRegistry, StackedExpertMapping
from bridge.mappings.experts import (
    ExpertStacker, halves_from_interleaved, interleaved_from_halves, stack_experts, unstack_expert,
)
from tests.bridge.test_transforms import assert_bit_equal, dtypes, random_bits, seeds

_SETTINGS = settings(max_examples=60, deadline=None)
CTX = MappingContext()


def leading_shapes(*, max_dim: int = 4) -> st.SearchStrategy[tuple[int, ...]]:
    """``()`` (a bias), ``(rows,)`` (a weight) or two leading dimensions (a stacked weight)."""
    dim = st.integers(1, max_dim)
    return st.one_of(st.just(()), st.tuples(dim), st.tuples(dim, dim))


@_SETTINGS
@given(lead=leading_shapes(), half=st.integers(1, 6), dtype=dtypes(), seed=seeds())
def test_interleaved_from_halves_inverts_halves_from_interleaved(lead, half, dtype, seed):
    t = random_bits((*lead, 2 * half), dtype, seed)
    assert_bit_equal(interleaved_from_halves(halves_from_interleaved(t)), t)
    assert_bit_equal(halves_from_interleaved(interleaved_from_halves(t)), t)


def test_halves_from_interleaved_spelled_out():
    t = torch.tensor([[10, 20, 11, 21, 12, 22]])  # gate 1x, up 2x, alternating
    assert halves_from_interleaved(t).tolist() == [[10, 11, 12, 20, 21, 22]]
    with pytest.raises(MappingError, match="even last dimension"):
        halves_from_interleaved(torch.zeros(3))


@_SETTINGS
@given(experts=st.integers(1, 5), rest=leading_shapes(), dtype=dtypes(), seed=seeds())
def test_stack_experts_inverts_unstack_expert(experts, rest, dtype, seed):
    stacked = random_bits((experts, *rest), dtype, seed)
    slices = [unstack_expert(stacked, e, num_experts=experts) for e in range(experts)]
    assert_bit_equal(stack_experts(slices), stacked)
    for e, s in enumerate(slices):
        assert_bit_equal(unstack_expert(stack_experts(slices), e, num_experts=experts), s)


def test_unstack_expert_refuses_a_wrong_expert_count():
    with pytest.raises(MappingError, match="stacked tensor of 4 experts"):
        unstack_expert(torch.zeros(3, 2), 0, num_experts=4)


def _fc1(experts: int) -> StackedExpertMapping:
    return StackedExpertMapping("decoder.layers.*.mlp.experts.local_experts.*.linear_fc1.weight",
                                "model.layers.*.mlp.experts.gate_up_proj", num_experts=experts, transpose=True,
                                interleaved=True, sharding="gated")


@_SETTINGS
@given(experts=st.integers(1, 4), hidden=st.integers(1, 5), ffn=st.integers(1, 4), dtype=dtypes(), seed=seeds(),
       transpose=st.booleans(), interleaved=st.booleans())
def test_each_expert_round_trips_and_the_stack_is_rebuilt_bit_exactly(experts, hidden, ffn, dtype, seed, transpose,
                                                                      interleaved):
    m = StackedExpertMapping("decoder.layers.*.mlp.experts.local_experts.*.linear_fc1.weight",
                             "model.layers.*.mlp.experts.gate_up_proj", num_experts=experts, transpose=transpose,
                             interleaved=interleaved, sharding="gated")
    hf = random_bits((experts, hidden, 2 * ffn), dtype, seed)
    stacker = ExpertStacker()
    out = []
    for e in reversed(range(experts)):  # any order: EP ranks deliver their experts as blocks
        r = m.resolve(("3", str(e)))
        assert (r.megatron_param, r.hf_param, r.expert) == (
            f"decoder.layers.3.mlp.experts.local_experts.{e}.linear_fc1.weight", "model.layers.3.mlp.experts.gate_up_proj", e)
        full = r.hf_to_megatron({r.hf_param: hf}, CTX)
        assert tuple(full.shape) == ((2 * ffn, hidden) if transpose else (hidden, 2 * ffn))
        out += stacker.add(r, *next(iter(r.megatron_to_hf(full, CTX).items())))
    stacker.finish()
    assert [n for n, _ in out] == ["model.layers.3.mlp.experts.gate_up_proj"]
    assert_bit_equal(out[0][1], hf)


def test_gate_up_layout_matches_hf_use():
    """MCore's ``[gate; up]`` rows of expert e are HF's even / odd columns of ``gate_up_proj[e]``, transposed."""
    hf = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # 2 experts, hidden 3, 2 x ffn 2
    full = _fc1(2).resolve(("0", "1")).hf_to_megatron({"model.layers.0.mlp.experts.gate_up_proj": hf}, CTX)
    assert torch.equal(full, torch.cat([hf[1][:, 0::2], hf[1][:, 1::2]], dim=1).T)


def test_registry_lookups_both_ways():
    reg = MegatronMappingRegistry(_fc1(4), AutoMapping("decoder.layers.*.mlp.router.weight",
                                                       "model.layers.*.mlp.router.weight"))
    m = reg.megatron_to_hf_lookup("decoder.layers.1.mlp.experts.local_experts.2.linear_fc1.weight")
    assert isinstance(m, StackedExpertMapping) and (m.expert, m.hf_param) == (2, "model.layers.1.mlp.experts.gate_up_proj")
    back = reg.hf_to_megatron_lookup("model.layers.1.mlp.experts.gate_up_proj")  # feeds every expert: stays a pattern
    assert back.megatron_param == "decoder.layers.1.mlp.experts.local_experts.*.linear_fc1.weight" and back.is_pattern
    with pytest.raises(MappingError, match="not resolved to one expert"):
        back.hf_to_megatron({"model.layers.1.mlp.experts.gate_up_proj": torch.zeros(4, 2, 2)}, CTX)


def test_patterns_need_one_more_wildcard_on_the_megatron_side():
    with pytest.raises(MappingError, match="exactly one"):
        StackedExpertMapping("decoder.layers.*.mlp.router.weight", "model.layers.*.mlp.router.weight", num_experts=2)
    with pytest.raises(MappingError, match="num_experts >= 1"):
        StackedExpertMapping("a.*.b.*", "c.*", num_experts=0, sharding="replicated")


def test_stacker_passes_other_tensors_and_reports_missing_experts():
    stacker = ExpertStacker()
    plain = AutoMapping("decoder.final_layernorm.weight", "model.norm.weight")
    assert stacker.add(plain, "model.norm.weight", torch.ones(2))[0][0] == "model.norm.weight"
    m = _fc1(4)
    for e in (0, 2):
        assert list(stacker.add(m.resolve(("0", str(e))), "model.layers.0.mlp.experts.gate_up_proj", torch.zeros(1))) == []
    with pytest.raises(MappingError, match="exported twice"):
        stacker.add(m.resolve(("0", "2")), "model.layers.0.mlp.experts.gate_up_proj", torch.zeros(1))
    assert stacker.pending == {"model.layers.0.mlp.experts.gate_up_proj": [1, 3]}
    with pytest.raises(WeightMismatchError, match=r"missing experts.*\[1, 3\]"):
        stacker.finish()


@pytest.mark.parametrize("tp", [1, 2])
def test_import_reads_one_experts_rows_and_equals_the_reference_split(tp, tmp_path):
    """``shard_pieces`` (what load_weights reads) reads expert e's slice of the stacked file tensor, not all of it,
    and gives the reference ``split(kind, hf_to_megatron(whole tensors))`` bit for bit, for every kind used."""
    from safetensors.torch import save_file

    from bridge.models._moe import stacked_expert_mappings
    from bridge.parallel import kinds
    from bridge.streaming.files import SliceReader
    from bridge.streaming.shards import reads_slices, shard_pieces

    tensors = {"model.layers.0.mlp.experts.gate_up_proj": random_bits((3, 4, 8), torch.float32, 1),
               "model.layers.0.mlp.experts.gate_up_proj_bias": random_bits((3, 8), torch.float32, 2),
               "model.layers.0.mlp.experts.down_proj": random_bits((3, 4, 4), torch.float32, 3),
               "model.layers.0.mlp.experts.down_proj_bias": random_bits((3, 4), torch.float32, 4)}
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    src = SliceReader(tmp_path)
    read: list[str] = []
    src.get = lambda name: read.append(name)  # the fallback path would read whole tensors; it must not run
    for table_row in stacked_expert_mappings(experts=3, interleaved=True, biases=True):
        for e in range(3):
            m = table_row.resolve(("0", str(e)))
            assert reads_slices(m)
            for rank in range(tp):
                want = kinds.split(m.sharding, m.hf_to_megatron(tensors, CTX), tp=tp, rank=rank, name=m.megatron_param)
                assert_bit_equal(shard_pieces(m, CTX, src, tp=tp, rank=rank).tensor(), want)
    assert read == []


def test_offline_plans_refuse_stacked_experts_with_the_way_out():
    from bridge.errors import UnsupportedFeatureError
    from bridge.streaming.plan import plan_import

    with pytest.raises(UnsupportedFeatureError, match="offline .* stacked HF tensor.*AutoBridge"):
        plan_import(None, MegatronMappingRegistry(_fc1(2)), CTX, names=[])
