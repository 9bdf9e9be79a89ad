"""Megatron-LM itself, both ways, on every megatron-core wheel that ships ``megatron.training`` (0.17+):

* its ``load_checkpoint`` loads a checkpoint from ``import_ckpt`` in finetune mode (weights only), and the
  model then gives HF's logits (a silent fallback to random weights would not);
* a checkpoint its own ``save_checkpoint`` wrote (model only: no HF files, no record; on 0.17+ the common
  state lives inside the DCP files, not in ``common.pt``) exports back to HF bit-exactly with ``--hf-config``.

Megatron-LM runs in a subprocess with the release first on ``PYTHONPATH`` (tests/helpers/megatron_lm.py).
The latest release runs in the default suite; every other 0.17+ release is slow (prepared on first use).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.auto_bridge import AutoBridge
from bridge.runtime import reset_model_parallel
from harness.versions import RELEASES, version_key

import_ckpt, export_ckpt = AutoBridge.import_ckpt, AutoBridge.export_ckpt

ROOT = Path(__file__).resolve().parents[3]
TRAINING_RELEASES = [v for v in RELEASES if version_key(v) >= (0, 17, 0)]
LATEST = TRAINING_RELEASES[-1]
CASES = [pytest.param(v, marks=() if v == LATEST else pytest.mark.slow, id=v) for v in TRAINING_RELEASES]

pytestmark = [pytest.mark.usefixtures("fresh_parallel_state"), pytest.mark.network]


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from bridge.runtime import reset_model_parallel
    from tests.helpers.tiny import make_hf_checkpoint

    root = tmp_path_factory.mktemp("megatron-lm")
    hf = make_hf_checkpoint(root / "hf", seed=11)
    reset_model_parallel()
    out = import_ckpt(hf, root / "mc", offline=False)
    reset_model_parallel()
    return hf, out


@pytest.mark.slow
@pytest.mark.parametrize("release", [LATEST])
def test_megatron_lm_finetune_loads_an_offline_checkpoint(ours, tmp_path: Path, release: str) -> None:
    from bridge.megatron_ckpt.offline import convert_to_torch_dist

    hf, _ = ours
    offline = convert_to_torch_dist(hf, tmp_path / "offline", open_bridge=AutoBridge.from_hf_pretrained,
                                    progress=False).path
    report = _run(release, "load", offline, hf, tmp_path / "load.json")
    assert report["diff_before"] > 0.1 and report["diff_after"] <= 1e-5, report


def _run(release: str, mode: str, first: Path, second: Path, report: Path) -> dict:
    from harness.probes.envs import prepare_revision

    prepared = prepare_revision(f"pypi:{release}")
    if prepared.error or not prepared.pythonpath:
        pytest.fail(f"megatron-core {release} could not be prepared ({prepared.error}); this test needs the package "
                    "index on an empty release cache: offline, deselect it with -m 'not network'")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([*prepared.pythonpath, str(ROOT)])}
    proc = subprocess.run([sys.executable, "-m", "tests.helpers.megatron_lm", mode, str(first), str(second),
                           str(report)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(report.read_text())


@pytest.mark.parametrize("release", CASES)
def test_megatron_lm_finetune_loads_our_checkpoint(ours, tmp_path: Path, release: str) -> None:
    hf, mc = ours
    report = _run(release, "load", mc, hf, tmp_path / "load.json")
    assert report["iteration"] == 0  # finetune: weights only
    assert report["diff_before"] > 0.1, report  # the model did start from other weights
    assert report["diff_after"] <= 1e-5, report


@pytest.mark.parametrize("release", CASES)
def test_a_checkpoint_megatron_lm_saved_exports_back_bit_exactly(ours, tmp_path: Path, release: str) -> None:
    hf, _ = ours
    report = _run(release, "save", hf, tmp_path / "mlm", tmp_path / "save.json")
    assert report["saved"] == ["iter_0000007", "latest_checkpointed_iteration.txt"]
    for offline in (True, False):  # copied from the records (index checked on the meta device), and model-built
        reset_model_parallel()
        out = export_ckpt(tmp_path / "mlm", tmp_path / f"back-{offline}", hf_config=hf, offline=offline)
        assert (out / "model.safetensors").read_bytes() == (hf / "model.safetensors").read_bytes(), offline
