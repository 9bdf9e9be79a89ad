"""Mistral: sliding-window attention (HF ``sliding_window=W`` == MCore ``window_size=(W-1, 0)``) on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import MistralConfig, MistralForCausalLM

from bridge import compat
from bridge.errors import UnsupportedFeatureError
from bridge.models.mistral.bridge import MistralBridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, make_checkpoint, max_abs_diff, token_ids,
)

WINDOW = 4
SEQ = 17  # > WINDOW: every query past position 3 loses keys to the window
TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2, sliding_window=WINDOW)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("mistral") / "hf", MistralConfig(**TINY), MistralForCausalLM)


def test_window_convention() -> None:
    provider = MistralBridge().provider_bridge(MistralConfig(**TINY))
    assert provider.window_size == (WINDOW - 1, 0)
    assert "window_attn_skip_freq" not in provider.config_overrides  # every layer is windowed
    assert MistralBridge().provider_bridge(MistralConfig(**{**TINY, "sliding_window": None})).window_size is None


def test_sliding_window_parity_and_bit_exact_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    bridge, model = build(checkpoint)
    assert model[0].config.window_size == (WINDOW - 1, 0)
    ids = token_ids(TINY["vocab_size"], seq=SEQ)
    assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"]) <= PARITY_ATOL
    assert_bit_exact_export(bridge, model, checkpoint, tmp_path / "out", ids)


@pytest.mark.parametrize("hf_window", [None, WINDOW - 1, WINDOW + 1], ids=["full", "one-less", "one-more"])
def test_window_matters_and_is_not_off_by_one(checkpoint: Path, hf_window: int | None) -> None:
    """Our logits are far from HF's with no window, or with a window one token shorter or longer."""
    _, model = build(checkpoint)
    ids = token_ids(TINY["vocab_size"], seq=SEQ)
    assert max_abs_diff(model, checkpoint, ids, TINY["vocab_size"], sliding_window=hf_window) > 1e-3


def test_refused_where_local_attention_cannot_apply_the_window(checkpoint: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Releases before window support in the local DotProductAttention get a clear error, not wrong logits."""
    monkeypatch.setitem(compat.FEATURES, "local_sliding_window", lambda: False)
    provider = MistralBridge().provider_bridge(MistralConfig(**TINY))
    with pytest.raises(UnsupportedFeatureError, match=r"window_size=\(3, 0\).*Transformer Engine"):
        provider.finalize()
    without_window = MistralBridge().provider_bridge(MistralConfig(**{**TINY, "sliding_window": None}))
    without_window.finalize()  # no window, nothing refused

