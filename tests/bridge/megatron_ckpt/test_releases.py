"""Our own torch_dist round trip under the releases that changed dist_checkpointing's API.

0.17 moved the common state into the DCP files and dropped ``load``'s ``common_strategy`` keyword (and the
strategy classes); the default venv's 0.16.1 cannot show that, so each release runs
``scripts/megatron_ckpt_parity.py`` (save with ``import_ckpt``, load with ``load_megatron_model``, logits
against HF) in a subprocess with the release first on ``PYTHONPATH``. The GPU run of issue 19 found the
break (``cannot import name 'TorchCommonLoadStrategy'`` on 0.19.2); this test fails the same way without
the ``dist_ckpt_common_strategy`` feature in :mod:`bridge.compat`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.parity import PARITY_ATOL
from harness.versions import RELEASES, version_key

ROOT = Path(__file__).resolve().parents[3]
LATEST = RELEASES[-1]
CASES = [pytest.param(v, marks=() if v == LATEST else pytest.mark.slow, id=v)
         for v in ("0.16.1", "0.17.0", "0.18.2", LATEST)]

pytestmark = pytest.mark.network


def _torchrun(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=1",
                           str(ROOT / "scripts" / "megatron_ckpt_parity.py"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


@pytest.mark.parametrize("release", CASES)
def test_import_ckpt_then_load_megatron_model_under_the_release(release: str, tmp_path: Path) -> None:
    from harness.probes.envs import prepare_revision
    from tests.helpers.tiny import make_hf_checkpoint

    prepared = prepare_revision(f"pypi:{release}")
    assert not prepared.error and prepared.pythonpath, f"megatron-core {release} could not be prepared: {prepared.error}"
    hf = make_hf_checkpoint(tmp_path / "hf", seed=5)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([*prepared.pythonpath, str(ROOT)])}
    _torchrun(env, "--hf", str(hf), "--save", str(tmp_path / "mc"), "--report", str(tmp_path / "save.json"))
    _torchrun(env, "--hf", str(hf), "--load", str(tmp_path / "mc"), "--report", str(tmp_path / "load.json"))
    report = json.loads((tmp_path / "load.json").read_text())
    assert report["max_abs_diff"] is not None and report["max_abs_diff"] <= PARITY_ATOL, report
    record = json.loads((tmp_path / "mc" / "mcore_compat.json").read_text())
    assert record["mcore_version"] == release  # the writer's release is recorded (issue 15, point 4)
