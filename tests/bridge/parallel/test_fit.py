"""A TP size that does not fit a model fails once, before any tensor is split, naming every broken
rule with its numbers and suggesting the TP sizes that fit every parameter."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import BridgeError, ParallelLayoutError
from bridge.parallel.fit import fitting_tps
from bridge.parallel.state import layout_for, split_state
from tests.helpers.megatron_states import family_tables, to_megatron
from tests.strategies import HFArchitecture, hf_architectures, hf_state


def _megatron(arch: HFArchitecture):
    registry, ctx = family_tables(arch)
    return to_megatron(hf_state(arch), registry, ctx)


def _suggested(message: str) -> list[int]:
    match = re.search(r"that fit every parameter: ([\d, ]+)\.$", message)
    assert match, message
    return [int(t) for t in match.group(1).split(", ")]


@settings(max_examples=40, deadline=None)
@given(arch=hf_architectures(max_layers=2), tp=st.sampled_from((1, 2, 3, 4, 8)))
def test_a_layout_exists_exactly_when_its_tp_fits_and_the_error_suggests_the_ones_that_do(
    arch: HFArchitecture, tp: int
) -> None:
    full, kinds = _megatron(arch)
    tied = {"share_embeddings_and_output_weights": arch.tied}
    specs = layout_for(full, kinds, tp=1, **tied).params
    fits = fitting_tps(specs)
    # MCore's rules, written out in the strategy, are enough for every sharding kind
    assert set(arch.valid_tps()) <= set(fits)
    if tp in fits:
        assert len(split_state(full, layout_for(full, kinds, tp=tp, **tied))) == tp  # one state per rank
        return
    with pytest.raises(ParallelLayoutError) as info:
        layout_for(full, kinds, tp=tp, **tied)
    message = str(info.value)
    assert message.startswith(f"tp={tp} does not fit this model")
    groups = arch.num_key_value_heads
    if groups % tp and arch.family != "deepseek_v3":  # MLA has no query groups
        assert f"num_query_groups is {groups}, which is not a multiple of {tp}" in message
    assert _suggested(message) == fits
    for suggestion in fits[:4]:
        layout_for(full, kinds, tp=suggestion, **tied)


def test_query_groups_that_tp_does_not_divide_name_the_numbers_and_the_sizes_that_fit() -> None:
    arch = HFArchitecture("llama", 2, 8, 4, 2, 2, 16, 50, 8, tied=False)
    full, kinds = _megatron(arch)
    with pytest.raises(BridgeError) as info:
        layout_for(full, kinds, tp=4, pp=2)
    message = str(info.value)
    assert "tp=4 does not fit this model: 1 kind(s) of parameter" in message
    assert "'decoder.layers.0.self_attention.linear_qkv.weight' for tp=4: num_query_groups is 2" in message
    assert "(and 1 more parameter(s) like it)" in message
    assert _suggested(message) == [1, 2]


def test_the_suggestion_covers_every_parameter_not_only_the_query_groups() -> None:
    """8 query groups would allow tp=8, an FFN of 12 rows does not."""
    arch = HFArchitecture("llama", 1, 8, 8, 8, 2, 12, 50, 8, tied=True)
    full, kinds = _megatron(arch)
    with pytest.raises(ParallelLayoutError) as info:
        layout_for(full, kinds, tp=8, share_embeddings_and_output_weights=True)
    message = str(info.value)
    assert "'decoder.layers.0.mlp.linear_fc1.weight' for tp=8" in message
    assert "num_query_groups" not in message
    assert _suggested(message) == [1, 2, 4]  # the divisors of both 8 and 12
