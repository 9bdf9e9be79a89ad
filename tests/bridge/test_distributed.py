"""Real multi-process runs on CPU over gloo: TP=2, PP=2, TP=2 x PP=2 (torchrun).

Each run loads a tiny HF Llama into MCore at that layout (each rank its own shard), compares
the logits with HF on the last stage, exports back to HF from global rank 0 and checks the
export is bit-exact (see scripts/parallel_parity.py, which the GPU runs use too).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.parity import PARITY_ATOL
from tests.helpers.tiny import make_hf_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("dist")
    return {
        "untied": make_hf_checkpoint(base / "untied", num_hidden_layers=4, initializer_range=0.02),
        "tied": make_hf_checkpoint(base / "tied", num_hidden_layers=4, tie_word_embeddings=True,
                                   initializer_range=0.02),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(hf: Path, tp: int, pp: int, out: Path, *, ep: int = 1, nproc: int | None = None) -> dict:
    report = out.with_suffix(".json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc or tp * pp * ep}",
           f"--master-port={_free_port()}", "--master-addr=127.0.0.1", str(ROOT / "scripts" / "parallel_parity.py"),
           "--hf", str(hf), "--tp", str(tp), "--pp", str(pp), "--ep", str(ep), "--out-dir", str(out),
           "--report", str(report)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(report.read_text())


@pytest.mark.parametrize(
    ("tp", "pp", "tied"),
    [(2, 1, "untied"), (1, 2, "tied"), (2, 2, "untied")],
    ids=["tp2", "pp2-tied", "tp2xpp2"],
)
def test_gloo_layout_matches_hf_and_exports_bit_exact(checkpoints, tmp_path: Path, tp: int, pp: int, tied: str):
    rep = _torchrun(checkpoints[tied], tp, pp, tmp_path / "out")
    assert rep["backend"] == "gloo" and rep["world_size"] == tp * pp
    assert rep["max_abs_diff"] <= 1e-5, rep
    assert rep["export_bit_exact"], rep["export_mismatches"]


@pytest.fixture(scope="module")
def moe_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny MoE checkpoints, 4 routed experts per layer, top-2: Qwen3-MoE (renormalised) and DeepSeek-V3
    (MLA with query LoRA, a dense first layer, a shared expert, group-limited routing, expert bias)."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    from tests.bridge.models import test_deepseek_v3 as ds
    from tests.bridge.models.family_checks import make_checkpoint
    from tests.bridge.models.test_qwen3_moe import TINY

    base = tmp_path_factory.mktemp("dist-moe")
    return {
        "qwen3_moe": make_checkpoint(base / "qwen3_moe", Qwen3MoeConfig(**TINY, norm_topk_prob=True),
                                     Qwen3MoeForCausalLM),
        "deepseek_v3": make_checkpoint(base / "deepseek_v3", ds.config(), ds._with_expert_bias),
    }


_EP_LAYOUTS = [
    pytest.param("qwen3_moe", 1, 1, 2, 2, id="qwen3_moe-ep2"),
    pytest.param("qwen3_moe", 2, 1, 2, 4, id="qwen3_moe-tp2xep2", marks=pytest.mark.slow),
    pytest.param("qwen3_moe", 1, 2, 2, 4, id="qwen3_moe-pp2xep2", marks=pytest.mark.slow),
    pytest.param("qwen3_moe", 1, 1, 2, 4, id="qwen3_moe-ep2-with-expert-replicas", marks=pytest.mark.slow),
    pytest.param("deepseek_v3", 1, 1, 2, 2, id="deepseek_v3-ep2", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("family", "tp", "pp", "ep", "nproc"), _EP_LAYOUTS)
def test_expert_parallel_ranks_load_their_own_experts_and_export_them_all(moe_checkpoints, tmp_path: Path,
                                                                          family: str, tp: int, pp: int, ep: int,
                                                                          nproc: int):
    """Each EP rank holds num_experts / EP experts under local indices 0..n-1: the import must give it its
    global experts (rank r: r*n ..) and the export must collect every expert once, from one replica each."""
    rep = _torchrun(moe_checkpoints[family], tp, pp, tmp_path / "out", ep=ep, nproc=nproc)
    assert rep["world_size"] == nproc and rep["ep"] == ep
    assert rep["max_abs_diff"] <= PARITY_ATOL, rep  # as the single-process MoE parity
    assert rep["export_bit_exact"], rep["export_mismatches"]
