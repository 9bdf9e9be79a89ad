"""The probe payload as the runner starts it (a subprocess), against the megatron-core installed here.

Each result is checked against the RESULT.json schema of the probes interface; the verdicts are
checked against what they claim (versions, row names, logits within the bound, bit-exact exports).
The multi-process and Hypothesis tests are slow (``nox -s slow``).

The same tests hold on a CUDA host and where Transformer Engine is installed: what MCore warns about
depends on whether TE imports (each case asserts its own), and "no GPU" is made by hiding the GPUs
(``CUDA_VISIBLE_DEVICES=""``), not assumed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.models import FAMILIES
from harness.probes import catalog

ROOT = Path(__file__).resolve().parents[3]
STATUSES = ("passed", "failed", "skipped")


HAVE_TE = importlib.util.find_spec("transformer_engine") is not None
TE_FALLBACK = ("Transformer Engine and Apex are not installed", "Transformer Engine is not installed")
"""How MCore 0.16.1 says it falls back to torch (optimizer, clip_grads, FSDP, TE extensions)."""


def run_payload(test: str, out: Path, *, device: str = "cpu", pythonpath: tuple[str, ...] = (),
                timeout: float = 400, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((*pythonpath, str(ROOT))), "OMP_NUM_THREADS": "1",
           **(env or {})}
    cmd = [sys.executable, "-m", "harness.probes.payload", test, "--out", str(out), "--device", device]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=out.parent)


def assert_schema(result: dict[str, Any], test: str) -> None:
    """RESULT.json as probes_interface.md defines it."""
    assert set(result) == {"test", "status", "rows", "warnings", "mcore_version", "python", "torch",
                           "transformers", "device", "duration_s", "notes"}
    assert result["test"] == test and result["status"] in STATUSES
    assert set(result["rows"]) == set(catalog.test_by_name(test).rows)
    for row in result["rows"].values():
        assert set(row) == {"status", "details", "metrics"} and row["status"] in STATUSES
        assert isinstance(row["details"], str) and row["details"]
        assert all(isinstance(k, str) and isinstance(v, (float, int, bool, str)) for k, v in row["metrics"].items())
    statuses = {row["status"] for row in result["rows"].values()}
    expected = "failed" if "failed" in statuses else "passed" if "passed" in statuses else "skipped"
    assert result["status"] == expected
    for w in result["warnings"]:
        assert set(w) == {"category", "message", "filename", "lineno"}
        assert isinstance(w["lineno"], int) and w["filename"].startswith("megatron/")
    keys = [(w["category"], w["message"], w["filename"], w["lineno"]) for w in result["warnings"]]
    assert len(keys) == len(set(keys)), "warnings are deduplicated"
    assert all(isinstance(result[k], str) and result[k] for k in ("python", "torch", "transformers", "device"))
    assert isinstance(result["duration_s"], float) and result["duration_s"] > 0
    assert isinstance(result["notes"], list)


def judged(test: str, tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    out = tmp_path / "result.json"
    proc = run_payload(test, out, **kwargs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert_schema(result, test)
    return result


def test_import_records_the_installed_version_and_megatrons_warnings(tmp_path: Path) -> None:
    from megatron.core import package_info

    result = judged("import", tmp_path)
    assert result["status"] == "passed" and result["mcore_version"] == package_info.__version__
    assert result["device"] == "cpu"
    fallbacks = [w for w in result["warnings"] if w["category"] == "UserWarning"
                 and any(text in w["message"] for text in TE_FALLBACK)]
    if HAVE_TE:  # nothing to fall back from: a recorded fallback warning would be invented
        assert fallbacks == [], fallbacks
    else:  # 0.16.1 without Transformer Engine warns (from its own files) that it falls back to torch
        assert fallbacks, result["warnings"]


def test_family_llama_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    result = judged("family:llama", tmp_path)
    row = result["rows"]["llama"]
    assert row["status"] == "passed", row["details"]
    metrics = row["metrics"]
    assert metrics["variants_passed"] == metrics["variants"] == 3  # LlamaBridge.representative_configs
    assert metrics["max_abs_diff"] <= 1e-5 and metrics["cosine"] > 0.99999 and metrics["export_bit_exact"] is True
    assert any(note.startswith("bridge.cpu patches applied") for note in result["notes"])


def test_cuda_without_a_gpu_skips_every_row(tmp_path: Path) -> None:
    result = judged("recipes", tmp_path, device="cuda", env={"CUDA_VISIBLE_DEVICES": ""})  # no GPU, even on a GPU host
    assert result["status"] == "skipped"
    assert all("CUDA is not available" in row["details"] for row in result["rows"].values())


def test_unknown_test_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.probes.payload import main

    assert main(["family:gpt5", "--out", str(tmp_path / "r.json")]) == 2
    assert "known: import" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def _broken_mcore(root: Path) -> Path:
    core = root / "megatron" / "core"
    core.mkdir(parents=True)
    (core / "__init__.py").write_text('raise ImportError("broken on purpose")\n')
    return root


def test_an_mcore_that_does_not_import_fails_import_and_is_left_to_the_runner_elsewhere(tmp_path: Path) -> None:
    broken = str(_broken_mcore(tmp_path / "rev"))
    result = judged("import", tmp_path, pythonpath=(broken,))
    assert result["status"] == "failed" and result["mcore_version"] == ""
    assert all("broken on purpose" in row["details"] for row in result["rows"].values())
    proc = run_payload("family:llama", tmp_path / "other.json", pythonpath=(broken,))
    assert proc.returncode == 3 and not (tmp_path / "other.json").exists()
    assert proc.stderr.strip().splitlines()[-1].startswith("payload: megatron.core does not import: ImportError")


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_passes_on_the_installed_release(family: str, tmp_path: Path) -> None:
    result = judged(f"family:{family}", tmp_path)
    assert result["status"] == "passed", result["rows"][family]["details"]


@pytest.mark.slow
def test_properties_hold_for_random_llamas(tmp_path: Path) -> None:
    result = judged("properties", tmp_path)
    row = result["rows"]["llama"]
    assert row["status"] == "passed", row["details"]
    assert row["metrics"]["examples"] == row["metrics"]["max_examples"] == 10


@pytest.mark.slow
@pytest.mark.parametrize("test", ["tp2", "pp2"])
def test_two_process_layouts_over_gloo(test: str, tmp_path: Path) -> None:
    result = judged(test, tmp_path)
    row = result["rows"]["llama"]
    assert row["status"] == "passed", row["details"]
    assert row["metrics"]["backend"] == "gloo" and row["metrics"]["world_size"] == 2
    assert row["metrics"]["max_abs_diff"] <= 1e-5 and row["metrics"]["export_bit_exact"] is True
