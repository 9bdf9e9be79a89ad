"""bridge.resolved_config: a snapshot of a transformers config, rebuilt without transformers, must make every
family produce exactly what the real config makes it produce (provider, mapping table, mapping context,
export config), for every registered family's representative configs; encode/decode are inverses."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bridge.megatron_ckpt.writer import provider_record
from bridge.registry import MegatronModelBridge, registered_bridges
from bridge.requirements import variant_names
from bridge.resolved_config import CachedConfigGap, ResolvedConfig, Unsnapshottable, decode, encode, snapshot


def _cases() -> list[Any]:
    cases = []
    for bridge_cls in registered_bridges():
        configs = bridge_cls.representative_configs()
        for name, config in zip(variant_names(configs), configs):
            cases.append(pytest.param(bridge_cls, config, id=f"{bridge_cls.family or bridge_cls.architecture}-{name}"))
    return cases


def _stored(config: Any) -> ResolvedConfig:
    """What a later process gets: the snapshot through JSON text (as bridge.config_cache stores it)."""
    return ResolvedConfig(json.loads(json.dumps(snapshot(config))))


def _everything(bridge: MegatronModelBridge, config: Any) -> dict[str, Any]:
    """All a family derives from an HF config on the offline paths, in comparable form."""
    provider = bridge.provider_bridge(config)
    registry = bridge.mapping_registry(provider)
    return {
        "provider_class": type(provider).__qualname__,
        "provider_record": provider_record(provider),
        # every field, callables and run settings included (same function objects in one process, same repr)
        "provider_fields": {f.name: repr(getattr(provider, f.name)) for f in dataclasses.fields(provider)},
        "mappings": [(type(m).__name__, m.megatron_param, m.hf_param) for m in registry],
        "context": bridge.mapping_context(provider),
        "export_config": bridge.export_config(config),
    }


def test_every_family_has_representative_configs() -> None:
    assert len(_cases()) >= len(registered_bridges()) >= 22


@pytest.mark.parametrize(("bridge_cls", "config"), _cases())
def test_a_stored_config_makes_every_family_produce_the_same(bridge_cls: type[MegatronModelBridge],
                                                             config: Any) -> None:
    bridge = bridge_cls()
    assert _everything(bridge, _stored(config)) == _everything(bridge, config)


@pytest.mark.parametrize(("bridge_cls", "config"), _cases())
def test_a_stored_config_answers_every_attribute_read_as_the_real_one(bridge_cls: type[MegatronModelBridge],
                                                                      config: Any) -> None:
    stored = _stored(config)
    assert vars(stored) == vars(config)
    data = snapshot(config)
    for name in [*vars(config), *data["computed"]]:
        real, ours = getattr(config, name), getattr(stored, name)
        if isinstance(ours, ResolvedConfig):
            assert vars(ours) == vars(real), name
        else:
            assert (ours, type(ours)) == (real, type(real)), name
    for name in data["missing"]:
        assert not hasattr(config, name) and not hasattr(stored, name)
    assert getattr(stored, "surely_not_an_hf_field", None) is None
    assert stored.to_dict() == config.to_dict()


@pytest.mark.parametrize(("bridge_cls", "config"), _cases()[::4])
def test_the_contract_fails_for_a_stored_value_off_by_one(bridge_cls: type[MegatronModelBridge], config: Any) -> None:
    """The comparison above is not vacuous: one stored value changed (the layer count) changes what the family
    produces (or the family refuses the config)."""
    data = json.loads(json.dumps(snapshot(config)))
    data["instance"]["num_hidden_layers"] += 1
    bridge = bridge_cls()
    try:
        changed = _everything(bridge, ResolvedConfig(data))
    except Exception:  # noqa: BLE001 - refusing the changed config is a difference too
        return
    assert changed != _everything(bridge, config)


def test_methods_and_writes_are_refused_loudly_not_defaulted() -> None:
    from transformers import LlamaConfig

    stored = _stored(LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4))
    with pytest.raises(CachedConfigGap, match="get_text_config"):
        stored.get_text_config()
    with pytest.raises(CachedConfigGap, match="read-only"):
        stored.hidden_size = 8
    with pytest.raises(CachedConfigGap, match="read-only"):
        del stored.hidden_size
    assert stored.hidden_size == 64 and repr(stored) == "ResolvedConfig(LlamaConfig)"


def test_attribute_map_aliases_win_as_in_transformers() -> None:
    from transformers import PretrainedConfig

    class Aliased(PretrainedConfig):
        model_type = "aliased_test"
        attribute_map = {"hidden_size": "n_embd"}

        def __init__(self, n_embd: int = 8, **kwargs: Any) -> None:
            self.n_embd = n_embd
            super().__init__(**kwargs)

    config = Aliased(n_embd=12)
    stored = _stored(config)
    assert (stored.hidden_size, stored.n_embd, config.hidden_size) == (12, 12, 12)


def test_a_config_with_its_own_getattr_is_not_snapshotted() -> None:
    from transformers import PretrainedConfig

    class Dynamic(PretrainedConfig):
        model_type = "dynamic_test"

        def __getattr__(self, name: str) -> Any:
            if name == "anything":
                return 1
            raise AttributeError(name)

    with pytest.raises(Unsnapshottable, match="__getattr__"):
        snapshot(Dynamic())


def test_a_non_data_instance_attribute_makes_the_config_unsnapshottable() -> None:
    from transformers import PretrainedConfig

    config = PretrainedConfig()
    config.__dict__["handle"] = object()
    with pytest.raises(Unsnapshottable, match="handle"):
        snapshot(config)


def test_decode_refuses_what_encode_never_writes() -> None:
    for bad in ({"nope": 1}, {"tuple": [1], "dict": {}}, {"dtype": "float8"}):
        with pytest.raises((ValueError, KeyError)):
            decode(bad)


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | \
    st.sampled_from([torch.float32, torch.bfloat16, torch.float16])
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    | st.dictionaries(st.integers(), inner, max_size=3)
    | st.frozensets(st.text(max_size=4), max_size=3),
    max_leaves=12,
)


@given(value=values)
def test_decode_inverts_encode_through_json(value: Any) -> None:
    back = decode(json.loads(json.dumps(encode(value))))
    assert back == value
    assert _types(back) == _types(value)


def _types(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value), [_types(v) for v in value]
    if isinstance(value, dict):
        return dict, {k: _types(v) for k, v in value.items()}
    return type(value)
