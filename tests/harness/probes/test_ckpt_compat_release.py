"""One real cross-release cell of the checkpoint table: llama written under megatron-core 0.16.1, read under 0.19.2.

The writer runs under 0.16.1 through :func:`harness.probes.ckpt_store.ensure_written` (cached in the user's
cache like a probe result); the reader is the probe's own :func:`~harness.probes.payload_ckpt.read_cell`, run in
a subprocess with 0.19.2 first on ``PYTHONPATH``. The same subprocess covers 0.19's GPTModel -> HybridModel
paths: MCore's ``gpt_checkpoint_interop``, and the bridge's HybridModel, which asks for other keys than the GPT
layout holds until ``migrate-ckpt --model-class hybrid`` rewrites it. About a minute; the whole grid is slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.parity import PARITY_ATOL

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.network  # the releases are prepared from PyPI on first use

_READ = """
import json, sys, tempfile
from pathlib import Path
from harness.probes.ckpt_store import Written
from harness.probes.payload_ckpt import read_cell

if __name__ == "__main__":  # MCore 0.19's save starts processes that re-import __main__
    entry = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        cell = read_cell(Written(sys.argv[3], "0.16.1", "written", entry), interop=True, workdir=Path(tmp))
    Path(sys.argv[2]).write_text(json.dumps(cell, default=str))
"""


def _cell_016_read_by_0192(family: str, tmp_path: Path) -> dict:
    from harness.probes.ckpt_store import ensure_written
    from harness.probes.envs import prepare_revision

    written = ensure_written(family, "0.16.1")
    assert written.status == "written", written.reason
    assert json.loads((written.checkpoint / "mcore_compat.json").read_text())["mcore_version"] == "0.16.1"
    reader = prepare_revision("pypi:0.19.2")
    assert not reader.error, reader.error
    script = tmp_path / "read.py"
    script.write_text(_READ)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "NO_VCS_VERSION": "1",
           "PYTHONPATH": os.pathsep.join([*reader.pythonpath, str(ROOT)])}
    proc = subprocess.run([sys.executable, str(script), str(written.directory), str(tmp_path / "cell.json"), family],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "cell.json").read_text())


@pytest.mark.slow
def test_a_016_deepseek_v2_checkpoint_needs_migrate_ckpt_on_0192(tmp_path: Path) -> None:
    """The real break the grid found: 0.19's MLA takes the KV norm only inside linear_kv_up_proj."""
    cell = _cell_016_read_by_0192("deepseek_v2", tmp_path)
    assert cell["bridge"]["verdict"] == "fails" and cell["mcore"]["verdict"] == "fails", cell
    assert cell["first_difference"] == ("missing 'decoder.layers.0.self_attention.linear_kv_up_proj.layer_norm_weight' "
                                        "(and 2 more)")
    assert "linear_kv_up_proj.layer_norm_weight" in cell["mcore"]["details"]  # MCore's own loader: the same key
    assert cell["verdict"] == "loads_after_migrate" and cell["migrated"]["max_abs_diff"] <= PARITY_ATOL, cell


def test_a_016_llama_checkpoint_read_by_0192_with_its_hybrid_paths(tmp_path: Path) -> None:
    cell = _cell_016_read_by_0192("llama", tmp_path)
    for path in ("bridge", "mcore", "hybrid_interop"):
        assert cell[path]["verdict"] in ("loads", "loads_with_warnings"), (path, cell[path])
        assert cell[path]["max_abs_diff"] <= PARITY_ATOL, (path, cell[path])
    assert cell["verdict"] == "loads_with_warnings"  # 0.19 warns that a pre-0.17 checkpoint's common.pt is read
    assert "load_common is deprecated" in cell["bridge"]["details"]
    migrate = cell["hybrid_migrate"]
    assert migrate["first_difference"].startswith("missing 'decoder.final_norm.weight'"), migrate
    assert migrate["verdict"] == "loads_after_migrate" and migrate["max_abs_diff"] <= PARITY_ATOL, migrate


@pytest.mark.slow
def test_a_016_tiny_gpt_checkpoint_migrates_to_a_hybrid_model_with_its_remote_code(tmp_path: Path) -> None:
    """migrate-ckpt inside the probe builds TinyGPT (``trust_remote_code``) from the checkpoint's HF copy: without
    the trust flag its hybrid_migrate path was an ``error`` ("needs custom code ..., which is not trusted")."""
    cell = _cell_016_read_by_0192("tiny_gpt", tmp_path)
    assert cell["bridge"]["verdict"] in ("loads", "loads_with_warnings"), cell["bridge"]
    migrate = cell["hybrid_migrate"]
    assert "not trusted" not in migrate.get("details", ""), migrate
    assert migrate["verdict"] == "loads_after_migrate" and migrate["max_abs_diff"] <= PARITY_ATOL, migrate
