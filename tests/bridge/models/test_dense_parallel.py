"""The new dense families' custom layer under real tensor and pipeline parallelism (torchrun, gloo, CPU).

Gemma 3 exercises every piece the bridge adds to MCore's local layer: the post-norms inside the
row-parallel ``linear_proj``/``linear_fc2`` (after TP's all-reduce), zero-centred QK norms, and the
sliding layers' own RoPE base, chosen by the *global* layer number (layer 3 of 4 sits on PP stage 2
as its first layer). Gemma 2 adds the soft-capped attention and the final soft-cap on TP-split logits.
Each run takes 35-60 s on the shared 2-core box, so one stays in the default suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

from bridge.parity import PARITY_ATOL
from tests.bridge.models import test_gemma2, test_gemma3
from tests.bridge.models.family_checks import make_checkpoint
from tests.bridge.test_distributed import _torchrun


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("dense-parallel")
    gemma3 = Gemma3TextConfig(**{**test_gemma3.TINY, "num_hidden_layers": 4, "initializer_range": 0.02,
                                 "layer_types": ["sliding_attention", "full_attention"] * 2},
                              rope_parameters=test_gemma3.ROPE)
    gemma2 = Gemma2Config(**{**test_gemma2.TINY, "num_hidden_layers": 4, "initializer_range": 0.02})
    return {
        "gemma3": make_checkpoint(base / "gemma3", gemma3, Gemma3ForCausalLM),
        "gemma2": make_checkpoint(base / "gemma2", gemma2, Gemma2ForCausalLM),
    }


@pytest.mark.parametrize(("family", "tp", "pp"), [
    pytest.param("gemma3", 1, 2, id="gemma3-pp2"),  # the default suite's case: global layer numbers per stage
    pytest.param("gemma3", 2, 1, id="gemma3-tp2", marks=pytest.mark.slow),
    pytest.param("gemma2", 2, 1, id="gemma2-tp2", marks=pytest.mark.slow),
    pytest.param("gemma2", 1, 2, id="gemma2-pp2", marks=pytest.mark.slow),
])
def test_gloo_layout_matches_hf_and_exports_bit_exact(checkpoints, tmp_path: Path, family: str, tp: int, pp: int):
    rep = _torchrun(checkpoints[family], tp, pp, tmp_path / "out")
    assert rep["backend"] == "gloo" and rep["world_size"] == tp * pp
    assert rep["max_abs_diff"] <= PARITY_ATOL, rep
    assert rep["export_bit_exact"], rep["export_mismatches"]
