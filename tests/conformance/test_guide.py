"""The guide's steps on every family, untied and tied, at TP = PP = 1 on CPU.

What a Megatron-Bridge user checks after changing only the import line: the forward returns HF-width
logits equal to HF's (<= 1e-5 in fp32), ``save_hf_pretrained`` / ``save_hf_weights`` /
``export_hf_weights`` give back the checkpoint's tensors bit for bit, and ``get_conversion_tasks``
covers every parameter and every HF tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bridge.parity import PARITY_ATOL
from tests.conformance import guide
from tests.conformance.conftest import source_tensors
from tests.conformance.families import CASES

CASE_IDS = [f"{f.name}-{'tied' if t else 'untied'}" for f, t in CASES]
cases = pytest.mark.parametrize(("family", "tied"), CASES, ids=CASE_IDS)


@cases
def test_forward_returns_hf_width_logits_equal_to_hf(guide_run, family, tied) -> None:
    run = guide_run(family, tied)
    batch, seq = run.case.input_ids.shape
    assert run.logits.shape == (batch, seq, run.case.vocab_size) == run.case.hf_logits.shape
    assert (run.logits - run.case.hf_logits).abs().max().item() <= PARITY_ATOL


@cases
def test_save_hf_pretrained_gives_back_the_checkpoint_bit_exact(guide_run, family, tied, tmp_path: Path) -> None:
    run = guide_run(family, tied)
    guide.save_pretrained(run.bridge, run.model, tmp_path / "out")
    before, after = source_tensors(run.case.path), source_tensors(tmp_path / "out")
    assert sorted(after) == sorted(before)
    assert all(after[n].dtype == t.dtype and torch.equal(after[n], t) for n, t in before.items())
    assert ("lm_head.weight" in after) is not tied
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["vocab_size"] == run.case.vocab_size and config["tie_word_embeddings"] is tied


@cases
def test_export_hf_weights_streams_every_tensor_bit_exact(guide_run, family, tied) -> None:
    run = guide_run(family, tied)
    streamed = guide.stream_weights(run.bridge, run.model)
    before = source_tensors(run.case.path)
    assert sorted(streamed) == sorted(before)
    assert all(streamed[n].device.type == "cpu" and torch.equal(streamed[n], t) for n, t in before.items())
    first = next(iter(run.bridge.export_hf_weights(run.model, cpu=True)))
    assert (first.param_name, first.weight.shape) == (first[0], first[1].shape)  # Megatron-Bridge's HFWeightTuple


@cases
def test_conversion_tasks_cover_every_parameter_and_hf_tensor(guide_run, family, tied) -> None:
    run = guide_run(family, tied)
    tasks = guide.conversion_tasks(run.bridge, run.model)
    params = dict(run.model[0].named_parameters())
    names = [t.local_name for t in tasks]
    assert len(names) == len(set(names)) and set(names) >= set(params)
    assert set(names) - set(params) <= dict(run.model[0].named_buffers()).keys()  # e.g. DeepSeek-V3's expert bias
    assert all(t.param is params[t.local_name] for t in tasks if t.local_name in params)
    hf_names = {n for t in tasks for n in t.hf_names}
    assert hf_names >= set(source_tensors(run.case.path))
