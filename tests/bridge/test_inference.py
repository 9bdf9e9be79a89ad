"""forward_logits, sampling and generation with the vocabulary as HF has it (issue 14, Megatron-Bridge's usage).

A tiny Llama with a vocabulary of 200 (not a multiple of 128): the guide's ``model(input_ids, position_ids,
attention_mask=None)`` gives HF's width, untied and tied, at TP=1 here and at TP=2 over gloo; where padding
happens (should_pad_vocab=True, or TP=2 with a vocabulary of 201) forward_logits strips it, a padded id made
the best raw logit on purpose is never generated, and the export (padding rows poisoned) is bit-exact.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bridge.errors import ParallelLayoutError
from bridge.inference import sample_next_tokens
from bridge.parity import PARITY_ATOL
from tests.helpers.tiny import make_hf_checkpoint
from tests.helpers.vocab_padding import run_case

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("vocab")
    return {
        "untied200": make_hf_checkpoint(base / "untied200", vocab_size=200, initializer_range=0.02),
        "tied200": make_hf_checkpoint(base / "tied200", vocab_size=200, tie_word_embeddings=True,
                                      initializer_range=0.02),
        "untied201": make_hf_checkpoint(base / "untied201", vocab_size=201, initializer_range=0.02),
        "tied201": make_hf_checkpoint(base / "tied201", vocab_size=201, tie_word_embeddings=True,
                                      initializer_range=0.02),
    }


def _check(rep: dict, *, vocab: int, padded: int, reason: str) -> None:
    assert (rep["vocab"], rep["padded"], rep["reason"]) == (vocab, padded, reason), rep
    assert rep["raw_width"] == padded and rep["forward_width"] == vocab, rep
    assert rep["max_abs_diff"] is not None and rep["max_abs_diff"] <= PARITY_ATOL, rep
    if padded > vocab:  # a padded id was made the best raw logit: it is stripped and never generated
        assert rep["poisoned_rank_holds_row"] and rep["raw_argmax_is_padding"], rep
        assert rep["forward_width_after"] == vocab, rep
    assert rep["generated_max"] < vocab and rep["first_token_is_hf_greedy"], rep
    assert rep["export_bit_exact"], rep["export"]


@pytest.mark.parametrize("name", ["untied200", "tied200"])
def test_guide_usage_gives_hf_width_at_tp1(checkpoints, name, tmp_path: Path, fresh_parallel_state) -> None:
    rep = run_case(checkpoints[name], tmp_path / "out", tp=1)
    _check(rep, vocab=200, padded=200, reason="none")


@pytest.mark.parametrize("name", ["untied200", "tied200"])
def test_should_pad_vocab_pads_to_128_and_still_strips_masks_and_exports_bit_exact(
    checkpoints, name, tmp_path: Path, fresh_parallel_state, caplog
) -> None:
    with caplog.at_level("INFO", logger="bridge"):
        rep = run_case(checkpoints[name], tmp_path / "out", tp=1, should_pad=True)
    _check(rep, vocab=200, padded=256, reason="requested")
    assert any("should_pad_vocab=True" in r.getMessage() for r in caplog.records if r.name == "bridge.providers")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_EXPECTED = {"untied200": (200, 200, "none"), "tied200": (200, 200, "none"),
             "untied201": (201, 202, "tensor_parallel"), "tied201": (201, 202, "tensor_parallel"),
             "untied200:pad": (200, 256, "requested"), "tied200:pad": (200, 256, "requested")}


@pytest.mark.parametrize(
    ("tp", "pp", "cases"),
    [
        pytest.param(2, 1, ("untied200", "tied201"), id="tp2-hf-width-and-tp-forced-padding"),
        pytest.param(2, 1, ("tied200", "untied201", "untied200:pad"), id="tp2-the-other-cases",
                     marks=pytest.mark.slow),
        pytest.param(1, 2, ("tied200:pad",), id="pp2-tied-padded", marks=pytest.mark.slow),
    ],
)
def test_tp2_over_gloo_hf_width_and_padding_forced_by_tp(checkpoints, tp, pp, cases, tmp_path: Path) -> None:
    """One torchrun (2 ranks) per group of cases: vocab 200 (TP=2 divides it: no padding), vocab 201 (TP=2
    forces one padding row), vocab 200 with should_pad_vocab=True (256 rows); untied and tied. At PP=2 the last
    stage strips and samples, and generate hands each token to the first stage."""
    report = tmp_path / "report.json"
    args = [str(checkpoints[c.partition(":")[0]]) + (":pad" if c.endswith(":pad") else "") for c in cases]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
           "--master-addr=127.0.0.1", str(ROOT / "tests" / "helpers" / "vocab_padding.py"), "--tp", str(tp), "--pp", str(pp),
           "--report", str(report), "--out", str(tmp_path / "out"), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    reps = json.loads(report.read_text())
    for case, rep in zip(cases, reps, strict=True):
        vocab, padded, reason = _EXPECTED[case]
        _check(rep, vocab=vocab, padded=padded, reason=reason)
    if any(_EXPECTED[c][2] == "tensor_parallel" for c in cases):
        assert "TP=2 does not divide 201" in proc.stderr + proc.stdout  # the log says why it pads


# -- sampling on its own ---------------------------------------------------------------------------


def test_sampling_never_picks_a_padded_id_greedy_or_at_any_temperature() -> None:
    logits = torch.full((3, 2, 10), -5.0)
    logits[..., 8:] = 0.0  # zero padding rows: the case where argmax picked a token that does not exist
    logits[0, -1, 3] = -1.0
    assert sample_next_tokens(logits, vocab_size=8).tolist()[0] == 3
    assert bool((sample_next_tokens(logits, vocab_size=8) < 8).all())
    g = torch.Generator().manual_seed(0)
    for temperature in (0.5, 1.0, 10.0):
        drawn = torch.stack([sample_next_tokens(logits, vocab_size=8, temperature=temperature, generator=g)
                             for _ in range(50)])
        assert bool((drawn < 8).all()), temperature
    assert logits[..., 8:].eq(0.0).all()  # the caller's logits are not modified


def test_sampling_rejects_a_negative_temperature_and_logits_narrower_than_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="temperature"):
        sample_next_tokens(torch.zeros(1, 4), vocab_size=4, temperature=-1.0)
    with pytest.raises(ParallelLayoutError, match="narrower"):
        sample_next_tokens(torch.zeros(1, 4), vocab_size=5)
