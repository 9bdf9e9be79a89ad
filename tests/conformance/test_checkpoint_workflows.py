"""The guide's one-call workflows: ``AutoBridge.import_ckpt(hub_id, megatron_path)`` then, from a config-only
bridge, ``export_ckpt(megatron_path, hf_path)``; run offline from a Hub cache built in the test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bridge import AutoBridge
from tests.conformance.conftest import source_tensors
from tests.conformance.families import FAMILIES, build_case
from tests.helpers.hub_cache import add_to_hub_cache

LLAMA = next(f for f in FAMILIES if f.name == "llama")
REPO = "acme/tiny-llama"


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_import_ckpt_then_export_ckpt_gives_back_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 tied: bool) -> None:
    from transformers import AutoConfig

    case = build_case(LLAMA, tied, tmp_path / "hf")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    add_to_hub_cache(tmp_path / "cache", REPO, case.path)

    AutoBridge.import_ckpt(REPO, tmp_path / "megatron")  # guide: import_ckpt('meta-llama/...', './megatron_...')
    config = AutoConfig.from_pretrained(case.path)
    AutoBridge.from_hf_config(config).export_ckpt(tmp_path / "megatron", tmp_path / "hf_export")

    before, after = source_tensors(case.path), source_tensors(tmp_path / "hf_export")
    assert sorted(after) == sorted(before)
    assert all(after[n].dtype == t.dtype and torch.equal(after[n], t) for n, t in before.items())
