"""``mcore-compat convert`` / ``export`` with Hub IDs, offline, from a cache built in the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bridge import AutoBridge
from harness.cli import main
from tests.helpers.hub_cache import add_to_hub_cache
from tests.helpers.tiny import make_hf_checkpoint

REPO = "acme/tiny-llama"


@pytest.fixture
def cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """``(HF checkpoint, its snapshot)``: the checkpoint added as ``acme/tiny-llama`` to an offline cache."""
    hf = make_hf_checkpoint(tmp_path / "hf", seed=3)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hf, add_to_hub_cache(tmp_path / "cache", REPO, hf, refs=("main", "v1"))


def test_convert_and_export_take_hub_ids(cached: tuple[Path, Path], tmp_path: Path) -> None:
    hf, snapshot = cached
    assert main(["convert", REPO, str(tmp_path / "m"), "--tp", "2", "--revision", "v1", "--no-progress"]) == 0
    record = json.loads((tmp_path / "m" / "hf_source.json").read_text())
    assert record == {"hf_model_id": REPO, "revision": "v1", "commit": snapshot.name}
    assert AutoBridge.get_hf_model_id_from_checkpoint(tmp_path / "m") == REPO
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "back"), "--config-dir", REPO, "--no-progress"]) == 0
    before, after = load_file(hf / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert sorted(before) == sorted(after) and all(torch.equal(before[n], after[n]) for n in before)
    assert not (tmp_path / "back" / "hf_source.json").exists()  # the record stays with the Megatron layout
    assert json.loads((tmp_path / "back" / "config.json").read_text()) == json.loads((hf / "config.json").read_text())


def test_convert_reports_a_miss_and_a_malformed_id(cached: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    assert main(["convert", "acme/absent", str(tmp_path / "m"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "acme/absent" in err and "hf download acme/absent" in err and "HF_HUB_OFFLINE" in err
    assert main(["convert", "acme/../x", str(tmp_path / "m"), "--no-progress"]) == 1
    assert "neither a local checkpoint directory" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
