"""Resharding on load over gloo under torchrun: a torch_dist checkpoint written at one TP x PP loads at
another with the HF logits (scripts/megatron_ckpt_parity.py), and exports bit-exactly without a model (the
offline route tiles the chunks every rank wrote). The default suite writes at TP=2 and loads at
PP=2 (torchrun) and at TP=1 (in process); PP=2 -> TP=2, TP=2 x PP=2 -> TP=1 x PP=1 and the reverse are slow."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.tiny import make_hf_checkpoint

    return make_hf_checkpoint(tmp_path_factory.mktemp("reshard-on-load") / "hf", seed=6, num_hidden_layers=4,
                              initializer_range=0.02)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(hf: Path, tp: int, pp: int, mode: str, directory: Path) -> dict:
    report = directory.parent / f"{mode}-{tp}x{pp}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={tp * pp}",
           f"--master-port={_free_port()}", "--master-addr=127.0.0.1", str(ROOT / "scripts" / "megatron_ckpt_parity.py"),
           "--hf", str(hf), "--tp", str(tp), "--pp", str(pp), f"--{mode}", str(directory), "--report", str(report)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(report.read_text())


def _check(hf: Path, tmp_path: Path, write: tuple[int, int], read: tuple[int, int]) -> None:
    ckpt = tmp_path / "mc"
    saved = _torchrun(hf, *write, "save", ckpt)
    assert saved["world_size"] == write[0] * write[1] and saved["backend"] == "gloo"
    record = json.loads((ckpt / "mcore_compat.json").read_text())
    assert (record["parallel"]["tp"], record["parallel"]["pp"]) == write
    from bridge.auto_bridge import AutoBridge

    back = AutoBridge.export_ckpt(ckpt, tmp_path / "back", offline=True)  # every rank's chunks, tiled, no model
    assert (back / "model.safetensors").read_bytes() == (hf / "model.safetensors").read_bytes()
    loaded = _torchrun(hf, *read, "load", ckpt)
    assert loaded["max_abs_diff"] is not None and loaded["max_abs_diff"] <= 1e-5, loaded


@pytest.mark.usefixtures("fresh_parallel_state")
def test_a_checkpoint_written_at_tp2_loads_at_pp2_and_at_tp1_with_the_hf_logits(hf: Path, tmp_path: Path) -> None:
    _check(hf, tmp_path, (2, 1), (1, 2))
    from bridge.auto_bridge import AutoBridge
    from bridge.inference import forward_logits
    from tests.helpers.tiny import hf_logits

    model = AutoBridge.from_hf_pretrained(hf).load_megatron_model(tmp_path / "mc")  # TP = PP = 1, in this process
    ids = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(0))
    assert (forward_logits(model, ids) - hf_logits(hf, ids)).abs().max().item() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize(("write", "read"), [((2, 2), (1, 1)), ((1, 1), (2, 2)), ((1, 2), (2, 1))],
                         ids=["tp2xpp2-to-tp1", "tp1-to-tp2xpp2", "pp2-to-tp2"])
def test_a_checkpoint_loads_at_another_layout_slow(hf: Path, tmp_path: Path, write, read) -> None:
    _check(hf, tmp_path, write, read)


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_parallel_state")
def test_a_tied_model_written_at_tp2_exports_bit_exactly_without_a_model(tmp_path: Path) -> None:
    from bridge.auto_bridge import AutoBridge
    from tests.helpers.tiny import make_hf_checkpoint

    tied = make_hf_checkpoint(tmp_path / "hf", seed=7, num_hidden_layers=2, tie_word_embeddings=True)
    _torchrun(tied, 2, 1, "save", tmp_path / "mc")
    for offline in (True, False):
        back = AutoBridge.export_ckpt(tmp_path / "mc", tmp_path / f"back-{offline}", offline=offline)
        assert (back / "model.safetensors").read_bytes() == (tied / "model.safetensors").read_bytes(), offline
