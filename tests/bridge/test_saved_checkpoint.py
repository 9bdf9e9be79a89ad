"""``AutoBridge.from_auto_config`` and ``get_hf_model_id_from_checkpoint`` on saved layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import AutoBridge, CheckpointError, ConfigError
from bridge.saved_checkpoint import SOURCE_RECORD, read_source_record
from bridge.streaming import convert_checkpoint
from tests.helpers.tiny import make_hf_checkpoint


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, tiny_llama_checkpoint: Path) -> Path:
    out = tmp_path_factory.mktemp("saved") / "layout"
    convert_checkpoint(tiny_llama_checkpoint, out, tp=2, progress=False)
    return out


def test_the_source_is_recorded_and_read_back(converted: Path, tiny_llama_checkpoint: Path, tmp_path: Path) -> None:
    assert AutoBridge.get_hf_model_id_from_checkpoint(converted) == str(tiny_llama_checkpoint.resolve())
    assert read_source_record(converted)["commit"] is None
    assert AutoBridge.get_hf_model_id_from_checkpoint(tmp_path) is None  # no record, no layout
    (tmp_path / SOURCE_RECORD).write_text(json.dumps({"hf_model_id": 3}))
    with pytest.raises(CheckpointError, match="string 'hf_model_id'"):
        AutoBridge.get_hf_model_id_from_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no directory"):
        AutoBridge.get_hf_model_id_from_checkpoint(tmp_path / "absent")


def test_from_auto_config_is_a_config_only_bridge_of_the_layout(converted: Path, tiny_llama_checkpoint: Path) -> None:
    bridge = AutoBridge.from_auto_config(converted, tiny_llama_checkpoint)
    assert bridge.megatron_path == converted and bridge.hf_path is None
    assert bridge.hf_model_id == str(tiny_llama_checkpoint)
    assert bridge.transformer_config.num_layers == 2
    with pytest.raises(ConfigError, match="load_weights=True needs a checkpoint"):
        bridge.to_megatron_provider(load_weights=True)


@pytest.mark.parametrize("overrides, what", [
    ({"num_hidden_layers": 3}, "num_layers: layout 2, config 3"),
    ({"tie_word_embeddings": True}, "tied embeddings"),
    ({"vocab_size": 200}, "vocabulary"),
])
def test_from_auto_config_refuses_a_config_of_another_model(converted: Path, tmp_path: Path, overrides: dict,
                                                           what: str) -> None:
    other = make_hf_checkpoint(tmp_path / "other", **overrides)
    with pytest.raises(ConfigError, match=what):
        AutoBridge.from_auto_config(converted, other)


def test_from_auto_config_needs_a_saved_layout(tmp_path: Path, tiny_llama_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="has no layout.json"):
        AutoBridge.from_auto_config(tiny_llama_checkpoint, tiny_llama_checkpoint)
    with pytest.raises(CheckpointError, match="no directory"):
        AutoBridge.from_auto_config(tmp_path / "absent", tiny_llama_checkpoint)
