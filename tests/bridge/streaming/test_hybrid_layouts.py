"""Saved layouts in both parameter layouts: ``convert --model-class hybrid`` writes HybridModel names and records
the class in layout.json, export reads either, and a GPT-layout checkpoint reads as a Hybrid one (and back).
MCore-free (the streaming path builds no model), so it runs on the default venv; live HybridModel loading of a
saved layout is checked on 0.19.2 in tests/bridge/test_hybrid_releases.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from bridge.errors import ParallelLayoutError
from bridge.hybrid import gpt_to_hybrid
from bridge.parallel._common import bitwise_equal
from bridge.parallel.layout_io import load_layout, rank_file_name, read_layout
from bridge.parallel.spec import ParallelLayout
from bridge.streaming import convert_checkpoint, export_checkpoint
from tests.bridge.streaming.test_convert import moe_checkpoint  # noqa: F401 - the Qwen3-MoE fixture


@pytest.fixture(params=["llama", "moe"])
def checkpoint(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue({"llama": "tiny_llama_checkpoint", "moe": "moe_checkpoint"}[request.param])


def _keys(path: Path) -> set[str]:
    with safe_open(str(path), framework="pt") as handle:
        return set(handle.keys())


@pytest.mark.parametrize(("tp", "pp"), [(1, 1), (2, 2)])
def test_a_hybrid_layout_holds_hybrid_names_and_exports_bit_exact(checkpoint: Path, tp: int, pp: int,
                                                                    tmp_path: Path) -> None:
    gpt = convert_checkpoint(checkpoint, tmp_path / "gpt", tp=tp, pp=pp, progress=False)
    hybrid = convert_checkpoint(checkpoint, tmp_path / "hybrid", tp=tp, pp=pp, progress=False, model_class="hybrid")
    assert json.loads((hybrid.path / "layout.json").read_text())["model_class"] == "hybrid"
    assert read_layout(gpt.path).model_class == "gpt" and read_layout(hybrid.path).model_class == "hybrid"
    assert set(hybrid.layout.params) == {gpt_to_hybrid(n) for n in gpt.layout.params}
    last = hybrid.path / rank_file_name(0, pp - 1)
    assert "decoder.final_norm.weight" in _keys(last) and "decoder.layers.1.pre_mlp_layernorm.weight" in _keys(last)
    assert not any("final_layernorm" in k for k in _keys(last))
    # the same bytes under the other names: the GPT-layout checkpoint read for a HybridModel is the Hybrid one
    _, as_hybrid = load_layout(gpt.path, model_class="hybrid")
    layout, saved_hybrid = load_layout(hybrid.path)
    assert layout == hybrid.layout and sorted(as_hybrid) == sorted(saved_hybrid)
    for rank, tensors in saved_hybrid.items():
        assert sorted(as_hybrid[rank]) == sorted(tensors), rank
        assert all(bitwise_equal(as_hybrid[rank][n], t) for n, t in tensors.items()), rank
    _, as_gpt = load_layout(hybrid.path, model_class="gpt")
    _, saved_gpt = load_layout(gpt.path)
    assert {r: sorted(t) for r, t in as_gpt.items()} == {r: sorted(t) for r, t in saved_gpt.items()}

    out = export_checkpoint(hybrid.path, tmp_path / "hf", progress=False)
    assert (out.path / "model.safetensors").read_bytes() == (checkpoint / "model.safetensors").read_bytes()


def test_layout_json_records_the_class_and_older_files_are_gpt(tiny_llama_checkpoint: Path, tmp_path: Path) -> None:
    result = convert_checkpoint(tiny_llama_checkpoint, tmp_path / "l", progress=False, model_class="hybrid")
    doc = json.loads((result.path / "layout.json").read_text())
    assert ParallelLayout.from_json(doc) == result.layout
    assert ParallelLayout.from_json(doc).relabeled("gpt").relabeled("hybrid") == result.layout
    older = {k: v for k, v in result.layout.relabeled("gpt").to_json().items() if k != "model_class"}
    assert ParallelLayout.from_json(older).model_class == "gpt"
    with pytest.raises(ParallelLayoutError, match="model_class"):
        ParallelLayout.from_json({**doc, "model_class": "mamba"})
