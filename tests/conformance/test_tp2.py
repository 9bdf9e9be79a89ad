"""The guide's steps at TP = 2 (two processes over gloo) for Llama, untied and tied, in one torchrun launch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from tests.conformance.families import FAMILIES, build_case

ROOT = Path(__file__).resolve().parents[2]
LLAMA = next(f for f in FAMILIES if f.name == "llama")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llama_at_tp2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    built = [build_case(LLAMA, tied, tmp_path / "hf") for tied in (False, True)]
    cases = tmp_path / "cases.pt"
    torch.save([{"path": str(c.path), "input_ids": c.input_ids, "hf_logits": c.hf_logits} for c in built], cases)
    report = tmp_path / "report.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
           "--master-addr=127.0.0.1", str(ROOT / "tests" / "conformance" / "tp2_script.py"),
           "--cases", str(cases), "--out-dir", str(tmp_path / "out"), "--report", str(report)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    entries = json.loads(report.read_text())
    assert len(entries) == 2
    for entry, case in zip(entries, built, strict=True):
        assert entry["tp"] == 2
        assert entry["logits_shape"] == entry["hf_shape"] == [2, 11, case.vocab_size], entry  # HF width at TP=2
        assert entry["max_abs_diff"] <= 1e-5, entry
        assert entry["streamed_bit_exact"] and entry["saved_bit_exact"], entry
