"""bridge.models._window: HF's sliding window (``i - sliding_window < j <= i``) as MCore's
``window_size=(left, 0)`` (``i - left <= j <= i``), per layer where HF windows only some layers."""

from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from bridge.models._llama_like import LlamaModelProvider
from bridge.models._window import sliding_window_kwargs, window_layer_flags, with_sliding_window


def test_a_window_on_every_layer_is_one_shorter_on_the_left() -> None:
    assert sliding_window_kwargs({"sliding_window": 4096}, 3) == {"window_size": (4095, 0)}


def test_no_window_or_a_switched_off_one_gives_no_fields() -> None:
    assert sliding_window_kwargs({"sliding_window": None}, 3) == {}
    assert sliding_window_kwargs({"sliding_window": 8, "use_sliding_window": False}, 3) == {}
    assert sliding_window_kwargs({"sliding_window": 8, "layer_types": ["full_attention"] * 3}, 3) == {}


def test_layer_types_and_max_window_layers_give_per_layer_flags() -> None:
    mixed = {"sliding_window": 8, "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}
    assert sliding_window_kwargs(mixed, 3) == {"window_size": (7, 0), "window_attn_skip_freq": [1, 0, 1]}
    assert window_layer_flags({"sliding_window": 8, "max_window_layers": 2}, 3) == [0, 0, 1]


@pytest.mark.parametrize("bad", [{"sliding_window": 0}, {"sliding_window": True},
                                 {"sliding_window": 8, "layer_types": ["chunked_attention"] * 3},
                                 {"sliding_window": 8, "layer_types": ["full_attention"]}])
def test_a_window_mcore_cannot_express_is_refused(bad: dict) -> None:
    with pytest.raises(ConfigError):
        window_layer_flags(bad, 3)


def test_with_sliding_window_sets_the_fields_on_the_provider_it_returns() -> None:
    provider = LlamaModelProvider(num_layers=3)
    mixed = {"sliding_window": 8, "layer_types": ["sliding_attention", "sliding_attention", "full_attention"]}
    assert with_sliding_window(provider, mixed) is provider
    assert provider.window_size == (7, 0) and provider.window_attn_skip_freq == [1, 1, 0]
    untouched = LlamaModelProvider(num_layers=3)
    assert with_sliding_window(untouched, {"sliding_window": None}).window_size is None
