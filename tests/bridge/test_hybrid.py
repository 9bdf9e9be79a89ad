"""bridge.hybrid: the GPTModel <-> HybridModel layout map (a pure pair, property-tested), the derived
mapping tables, and the layer patterns. No MCore import: runs on any installed release."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import ConfigError, MappingError
from bridge.hybrid import (
    HybridMappingRegistry,
    gpt_to_hybrid,
    hybrid_pattern,
    hybrid_to_gpt,
    moe_layers,
)
from bridge.models.deepseek_v3.bridge import deepseek_v3_mappings
from bridge.models._llama_like import llama_mappings
from bridge.mappings import MegatronMappingRegistry

_ATTENTION_TAILS = ("input_layernorm.weight", "input_layernorm.bias", "self_attention.linear_qkv.weight",
                    "self_attention.linear_qkv.layer_norm_weight", "self_attention.q_layernorm.weight",
                    "self_attention.linear_q_down_proj.weight", "self_attention.linear_proj.weight")
_MLP_TAILS = ("pre_mlp_layernorm.weight", "mlp.linear_fc1.weight", "mlp.linear_fc1.layer_norm_weight",
              "mlp.linear_fc2.weight", "mlp.router.weight", "mlp.router.expert_bias",
              "mlp.experts.local_experts.3.linear_fc1.weight", "mlp.shared_experts.linear_fc2.weight")
_OTHERS = ("embedding.word_embeddings.weight", "output_layer.weight")


def gpt_names() -> st.SearchStrategy[str]:
    """GPTModel parameter names: any layer, any part of a block, the final norm, the rest."""
    layer = st.builds(lambda i, tail: f"decoder.layers.{i}.{tail}", st.integers(min_value=0, max_value=200),
                      st.sampled_from(_ATTENTION_TAILS + _MLP_TAILS))
    final = st.sampled_from(("decoder.final_layernorm.weight", "decoder.final_layernorm.bias"))
    return st.one_of(layer, final, st.sampled_from(_OTHERS))


def hybrid_names() -> st.SearchStrategy[str]:
    """HybridModel parameter names of ``*-``/``*E`` pairs: even layers attention, odd layers MLP/MoE."""
    attention = st.builds(lambda i, tail: f"decoder.layers.{2 * i}.{tail}", st.integers(min_value=0, max_value=200),
                          st.sampled_from(_ATTENTION_TAILS))
    mlp = st.builds(lambda i, tail: f"decoder.layers.{2 * i + 1}.{tail}", st.integers(min_value=0, max_value=200),
                    st.sampled_from(_MLP_TAILS))
    final = st.sampled_from(("decoder.final_norm.weight", "decoder.final_norm.bias"))
    return st.one_of(attention, mlp, final, st.sampled_from(_OTHERS))


@given(name=gpt_names())
def test_gpt_to_hybrid_then_back_is_the_identity(name):
    assert hybrid_to_gpt(gpt_to_hybrid(name)) == name


@given(name=hybrid_names())
def test_hybrid_to_gpt_then_back_is_the_identity(name):
    assert gpt_to_hybrid(hybrid_to_gpt(name)) == name


@given(names=st.lists(gpt_names(), unique=True, max_size=30))
def test_distinct_gpt_names_stay_distinct(names):
    assert len({gpt_to_hybrid(n) for n in names}) == len(names)


def test_the_layout_of_one_block():
    assert gpt_to_hybrid("decoder.layers.3.self_attention.linear_qkv.weight") == \
        "decoder.layers.6.self_attention.linear_qkv.weight"
    assert gpt_to_hybrid("decoder.layers.3.input_layernorm.weight") == "decoder.layers.6.input_layernorm.weight"
    assert gpt_to_hybrid("decoder.layers.3.pre_mlp_layernorm.weight") == "decoder.layers.7.pre_mlp_layernorm.weight"
    assert gpt_to_hybrid("decoder.layers.3.mlp.linear_fc1.layer_norm_weight") == \
        "decoder.layers.7.mlp.linear_fc1.layer_norm_weight"
    assert gpt_to_hybrid("decoder.final_layernorm.weight") == "decoder.final_norm.weight"
    assert gpt_to_hybrid("output_layer.weight") == "output_layer.weight"


@pytest.mark.parametrize("name", ["decoder.layers.2.mlp.linear_fc1.weight", "decoder.layers.3.self_attention.x",
                                  "decoder.layers.1.cross_attention.weight"])
def test_names_outside_the_pair_layout_are_refused(name):
    with pytest.raises(MappingError, match="hybrid layer|no place"):
        hybrid_to_gpt(name) if "cross" not in name else gpt_to_hybrid(name)


@pytest.mark.parametrize("table", [llama_mappings(tied=False), deepseek_v3_mappings(tied=True, q_lora=True)],
                         ids=["llama", "deepseek_v3"])
@given(layer=st.integers(min_value=0, max_value=60))
def test_the_hybrid_table_is_the_gpt_table_renamed(table, layer):
    gpt = MegatronMappingRegistry(*table)
    hybrid = HybridMappingRegistry(gpt)
    for m in table:
        name = m.megatron_param.replace("*", str(layer), 1).replace("*", "1")
        want = gpt.megatron_to_hf_lookup(name)
        got = hybrid.megatron_to_hf_lookup(gpt_to_hybrid(name))
        assert got is not None and got.hf_param == want.hf_param and got.sharding == want.sharding
        assert got.megatron_param == gpt_to_hybrid(name)
        for hf in want.hf_names():
            back = hybrid.hf_to_megatron_lookup(hf)
            assert back is not None and back.megatron_param == gpt_to_hybrid(gpt.hf_to_megatron_lookup(hf).megatron_param)
    # GPT names that are not hybrid names are not mapped (no silent reuse of the other layout)
    assert hybrid.megatron_to_hf_lookup(f"decoder.layers.{2 * layer}.mlp.linear_fc2.weight") is None


def test_patterns():
    assert hybrid_pattern([False, False]) == "*-*-"
    assert hybrid_pattern([False, True, True]) == "*-*E*E"
    assert hybrid_pattern([False, True, True, True], [1, 3]) == "*-|*E*E*E"
    assert hybrid_pattern([True] * 4, [2, 2]) == "*E*E|*E*E"
    with pytest.raises(ConfigError, match="do not add up"):
        hybrid_pattern([True] * 4, [1, 2])


def test_moe_layers_read_moe_layer_freq_as_mcore_does():
    assert moe_layers(3, num_experts=None) == [False] * 3
    assert moe_layers(3, num_experts=4) == [True] * 3
    assert moe_layers(4, num_experts=4, moe_layer_freq=2) == [True, False, True, False]
    assert moe_layers(3, num_experts=4, moe_layer_freq=[0, 1, 1]) == [False, True, True]
    with pytest.raises(ConfigError, match="lists 2 layers"):
        moe_layers(3, num_experts=4, moe_layer_freq=[0, 1])


# -- the model class on the installed release (the default venv's megatron-core predates HybridModel) --------

def test_the_model_class_comes_from_named_features(monkeypatch):
    from bridge import compat
    from bridge.errors import UnsupportedFeatureError
    from bridge.hybrid_model import resolve_model_class

    assert compat.has_feature("gpt_model") and not compat.has_feature("hybrid_model")
    assert resolve_model_class("auto") == "gpt" and resolve_model_class("gpt") == "gpt"
    with pytest.raises(UnsupportedFeatureError, match=r"model_class='hybrid' .* 0\.18"):
        resolve_model_class("hybrid")
    with pytest.raises(ConfigError, match="model_class must be one of"):
        resolve_model_class("mamba")
    monkeypatch.setitem(compat.FEATURES, "hybrid_model", lambda: True)
    monkeypatch.setitem(compat.FEATURES, "gpt_model", lambda: False)  # upstream deleted GPTModel
    assert resolve_model_class("auto") == "hybrid"
    with pytest.raises(UnsupportedFeatureError, match="has no GPTModel"):
        resolve_model_class("gpt")


def test_a_provider_refuses_hybrid_before_building(fresh_parallel_state):
    from bridge.errors import UnsupportedFeatureError
    from bridge.providers import GPTModelProvider

    provider = GPTModelProvider(model_class="hybrid")
    with pytest.raises(UnsupportedFeatureError, match="megatron-core 0.16.1 does not have"):
        provider.finalize()
    assert GPTModelProvider().finalize().resolved_model_class() == "gpt"


def test_one_spec_per_layer_kind_or_a_refusal():
    """HybridStack builds every layer of a kind from one spec: blocks of a kind that differ are refused, never
    built from the first block's spec (a family's spec customisation must reach every hybrid layer)."""
    import dataclasses

    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    from bridge.errors import UnsupportedFeatureError
    from bridge.hybrid_model import _one_spec

    dense, moe = get_gpt_layer_local_spec(), get_gpt_layer_local_spec(num_experts=4)
    assert _one_spec([dense, moe, moe], moe=False) is dense and _one_spec([dense, moe, moe], moe=True) is moe
    assert _one_spec([moe], moe=False) is None
    other = dataclasses.replace(dense, params={"hidden_dropout": 0.5})
    with pytest.raises(UnsupportedFeatureError, match="dense GPT blocks use different layer specs"):
        _one_spec([dense, other], moe=False)
