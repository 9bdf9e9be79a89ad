"""``bridge.compat``: adapting kwargs to the installed megatron-core, layer specs, named features."""

from __future__ import annotations

import pytest
from packaging.version import Version

from bridge import compat, compat_features, compat_release
from bridge.errors import ConfigError, UnsupportedFeatureError

INSTALLED = str(compat.installed_version())
ABSENT = "zz_feature_from_the_future"  # no megatron-core has it


@pytest.fixture
def history(monkeypatch):
    """Replace the generated field history with a hand-written one for the test."""
    data: dict = {"fields": {}, "renames": {}}
    for module in (compat, compat_release):  # the surface's name and the one every function looks up
        monkeypatch.setattr(module, "field_history", lambda: data)
    return data


# -- adapt_config_kwargs -------------------------------------------------------------------------

@pytest.mark.parametrize("off", [None, False])
def test_absent_switched_off_fields_are_dropped(off):
    out = compat.adapt_config_kwargs({"hidden_size": 64, ABSENT: off, "num_layers": 2})
    assert out == {"hidden_size": 64, "num_layers": 2}


def test_present_fields_are_kept_whatever_their_value():
    kwargs = {"num_query_groups": None, "add_bias_linear": False, "hidden_dropout": 0.0, "num_layers": 0}
    assert compat.adapt_config_kwargs(kwargs) == kwargs


@pytest.mark.parametrize("value", [0, 0.0, 1, True, "full", (4, 0), [], ""])
def test_absent_field_with_a_real_value_names_field_and_version(value, history):
    with pytest.raises(UnsupportedFeatureError) as exc:
        compat.adapt_config_kwargs({"hidden_size": 64, ABSENT: value})
    msg = str(exc.value)
    assert repr(ABSENT) in msg and INSTALLED in msg


def test_absent_field_names_its_first_release_when_the_history_knows_it(history):
    history["fields"][ABSENT] = {"first": "99.1.0"}
    with pytest.raises(UnsupportedFeatureError) as exc:
        compat.adapt_config_kwargs({ABSENT: 3})
    msg = str(exc.value)
    assert repr(ABSENT) in msg and INSTALLED in msg and "99.1.0" in msg and "megatron-core>=99.1.0" in msg


def test_absent_field_without_history_suggests_close_names(history):
    with pytest.raises(UnsupportedFeatureError, match=r"did you mean 'hidden_size'"):
        compat.adapt_config_kwargs({"hidden_sizee": 3})


def test_new_name_is_renamed_to_the_installed_old_name(history):
    history["renames"]["hidden_size"] = "zz_model_width"  # old -> new
    assert compat.adapt_config_kwargs({"zz_model_width": 64, "num_layers": 2}) == {"hidden_size": 64, "num_layers": 2}
    compat.check_config_fields(["zz_model_width"])  # accepted before anything is built


def test_an_old_name_is_refused_naming_its_new_name(history):
    history["renames"]["zz_ancient_width"] = "hidden_size"
    with pytest.raises(UnsupportedFeatureError) as exc:
        compat.adapt_config_kwargs({"zz_ancient_width": 64})
    assert "'zz_ancient_width'" in str(exc.value) and "'hidden_size'" in str(exc.value)


def test_real_field_history_agrees_with_the_installed_release():
    """When the harness has generated ``bridge/data/field_history.json``, it must describe this MCore."""
    compat.field_history.cache_clear()
    data = compat.field_history()
    assert isinstance(data["fields"], dict) and isinstance(data["renames"], dict)
    assert data["fields"], "bridge/data/field_history.json is committed; regenerate it with `mcore-compat matrix`"
    installed = compat.installed_version()
    wrong = sorted(name for name in compat.config_fields() if isinstance(data["fields"].get(name), dict)
                   and data["fields"][name].get("first") and Version(data["fields"][name]["first"]) > installed)
    assert not wrong, f"the history says these installed fields appear after {installed}: {wrong}"
    future = sorted(name for name, info in data["fields"].items() if isinstance(info, dict) and info.get("first")
                    and Version(info["first"]) > installed and name not in compat.config_fields())
    if future:
        with pytest.raises(UnsupportedFeatureError, match=data["fields"][future[0]]["first"].replace(".", r"\.")):
            compat.adapt_config_kwargs({future[0]: 1})


def test_check_config_fields():
    compat.check_config_fields(["hidden_size", "num_layers"])
    with pytest.raises(UnsupportedFeatureError, match=repr(ABSENT)):
        compat.check_config_fields({"hidden_size": 1, ABSENT: 2})


def test_config_fields_of_classes():
    fields = compat.config_fields()
    assert {"hidden_size", "num_layers", "num_attention_heads"} <= fields
    with pytest.raises(UnsupportedFeatureError, match="NoSuchTransformerConfig"):
        compat.config_fields("NoSuchTransformerConfig")
    from megatron.core.transformer import transformer_config as tc

    if hasattr(tc, "MLATransformerConfig"):
        mla = compat.config_fields("MLATransformerConfig")
        assert fields <= mla and "q_lora_rank" in mla


@pytest.mark.parametrize("value, off", [(None, True), (False, True), (0, False), (0.0, False), ("", False),
                                        ([], False), (True, False), ((0, 0), False)])
def test_is_switched_off(value, off):
    assert compat.is_switched_off(value) is off


# -- call kwargs and layer specs -----------------------------------------------------------------

def test_adapt_call_kwargs_keeps_accepted_and_drops_switched_off():
    def fn(a, b=None, *, c=1):
        return a

    assert compat.adapt_call_kwargs(fn, {"a": 1, "c": 2, "d": None, "e": False}, "fn") == {"a": 1, "c": 2}
    with pytest.raises(UnsupportedFeatureError) as exc:
        compat.adapt_call_kwargs(fn, {"a": 1, "d": 0}, "TheCallee")
    assert "'d'" in str(exc.value) and "TheCallee" in str(exc.value) and INSTALLED in str(exc.value)


@pytest.mark.parametrize("kwargs", [
    dict(normalization="RMSNorm", qk_layernorm=True),
    dict(normalization="LayerNorm", qk_layernorm=False),
    dict(normalization="RMSNorm", qk_layernorm=False, num_experts=4, moe_grouped_gemm=False),
])
def test_local_layer_spec_passes_only_accepted_arguments(kwargs):
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    if not compat.has_feature("local_spec_normalization"):
        pytest.skip("this megatron-core's local spec has no normalization argument")
    spec = compat.local_layer_spec(**kwargs, zz_future_switch=None, zz_other_switch=False)
    assert spec == get_gpt_layer_local_spec(**kwargs)
    assert spec != get_gpt_layer_local_spec(**{**kwargs, "qk_layernorm": not kwargs["qk_layernorm"]})


def test_local_layer_spec_refuses_an_unknown_argument_that_is_on():
    with pytest.raises(UnsupportedFeatureError) as exc:
        compat.local_layer_spec(normalization="RMSNorm", zz_future_switch=True)
    assert "'zz_future_switch'" in str(exc.value) and INSTALLED in str(exc.value)


# -- named features ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(compat.FEATURES))
def test_every_feature_answers_a_bool(name):
    assert type(compat.has_feature(name)) is bool


def test_features_that_are_field_checks_agree_with_the_fields():
    fields = compat.config_fields()
    expected = {"qk_layernorm": "qk_layernorm", "moe": "num_moe_experts", "sliding_window": "window_size",
                "moe_shared_experts": "moe_shared_expert_intermediate_size",
                "pipeline_stage_overrides": "num_layers_in_first_pipeline_stage"}
    assert set(expected) <= set(compat.FEATURES)
    for feature, field in expected.items():
        assert compat.has_feature(feature) is (field in fields), feature


def test_unknown_feature_is_an_error_listing_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        compat.has_feature("warp_drive")
    assert "'warp_drive'" in str(exc.value)
    assert all(name in str(exc.value) for name in compat.FEATURES)


# -- the public surface ----------------------------------------------------------------------------

def test_the_surface_re_exports_every_public_name_of_both_modules_as_is():
    """``bridge.compat`` defines nothing itself: every name of ``compat_release`` / ``compat_features``
    ``__all__`` is in its ``__all__`` and is the same object (one FEATURES dict, one cached function)."""
    names = set(compat_release.__all__) | set(compat_features.__all__)
    assert set(compat.__all__) == names
    for module in (compat_release, compat_features):
        for name in module.__all__:
            assert getattr(compat, name) is getattr(module, name), name


def test_a_simulated_history_reaches_the_features_module_too(monkeypatch):
    """Features read fields through ``compat_release`` at call time, so a test replacing them there is seen."""
    assert compat.has_feature("moe")
    monkeypatch.setattr(compat_release, "config_fields", lambda class_name="TransformerConfig": frozenset())
    assert not compat.has_feature("moe")
