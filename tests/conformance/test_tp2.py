"""The guide's steps at TP = 2 (two processes over gloo), untied and tied, one torchrun launch per family.

Llama runs in the default suite; every other family is ``slow``. A family whose config TP = 2 cannot hold
(``Family.tp2_refusal``) must be refused by the provider with its reason, checked in process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bridge.parity import PARITY_ATOL
from tests.conformance import guide
from tests.conformance.families import FAMILIES, Family, build_case

ROOT = Path(__file__).resolve().parents[2]
LLAMA = next(f for f in FAMILIES if f.name == "llama")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_at_tp2(family: Family, tmp_path: Path) -> None:
    built = [build_case(family, tied, tmp_path / "hf") for tied in (False, True) if family.tied or not tied]
    cases = tmp_path / "cases.pt"
    torch.save([{"path": str(c.path), "input_ids": c.input_ids, "hf_logits": c.hf_logits,
                 "trust_remote_code": family.custom_code} for c in built], cases)
    report = tmp_path / "report.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
           "--master-addr=127.0.0.1", str(ROOT / "tests" / "conformance" / "tp2_script.py"),
           "--cases", str(cases), "--out-dir", str(tmp_path / "out"), "--report", str(report)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    entries = json.loads(report.read_text())
    assert len(entries) == len(built)
    for entry, case in zip(entries, built, strict=True):
        print(f"{family.name}-{'tied' if case.tied else 'untied'} TP=2 max|diff| {entry['max_abs_diff']:.2e}")  # -s
        assert entry["tp"] == 2
        assert entry["logits_shape"] == entry["hf_shape"] == [2, 11, case.vocab_size], entry  # HF width at TP=2
        assert entry["max_abs_diff"] <= PARITY_ATOL, entry
        assert entry["streamed_bit_exact"] and entry["saved_bit_exact"], entry


def test_llama_at_tp2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    _run_at_tp2(LLAMA, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("family", [f for f in FAMILIES if f.name != "llama"], ids=lambda f: f.name)
def test_family_at_tp2_matches_hf_or_is_refused_with_its_reason(family: Family, tmp_path: Path) -> None:
    if family.tp2_refusal is None:
        _run_at_tp2(family, tmp_path)
        return
    error, reason = family.tp2_refusal
    case = build_case(family, False, tmp_path / "hf")
    provider = guide.load(case.path).to_megatron_provider()
    provider.tensor_model_parallel_size = 2
    with pytest.raises(error, match=reason):
        provider.finalize()
