"""`mcore-compat check`: one checkpoint's own needs, per revision, from the static scan and the matrix's probes.

The matrix here has the llama family's real rows (derived from the bridge) at 0.10.0 and 0.11.0, and the
real CPU probe results of the committed matrix at 0.10.0 (base and tied variants pass, the Llama-3.1
rope-scaling variant is refused).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import LlamaConfig

from harness.cli import EXIT_FAILURE, EXIT_OK, main
from harness.matrix import build_matrix, load_matrix
from harness.model_check import failed_variants
from harness.requirements import row_for_requirements
from harness.versions import project_root

REVS = ("pypi:0.10.0", "pypi:0.11.0")
SMALL = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2)
LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}


def config_dir(path: Path, **kw) -> Path:
    cfg = LlamaConfig(**SMALL, **kw)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.save_pretrained(path)  # config.json only: no weights anywhere
    return path


@pytest.fixture(scope="module")
def matrix_path(pypi_scans, tmp_path_factory) -> Path:
    from bridge.models.llama.bridge import LlamaBridge

    matrix = build_matrix([pypi_scans["0.10.0"], pypi_scans["0.11.0"]], [row_for_requirements(LlamaBridge.requirements()[0])])
    committed = load_matrix(project_root() / "matrices" / "matrix.json").cell("llama", "pypi:0.10.0")
    assert committed and committed.get("dynamic"), "the committed matrix should hold llama's probe results at 0.10.0"
    matrix.cell("llama", "pypi:0.10.0")["dynamic"] = committed["dynamic"]
    path = tmp_path_factory.mktemp("matrix") / "matrix.json"
    matrix.save(path)
    return path


@pytest.fixture(scope="module")
def cache_dir(archive_cache, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    (root / "pypi").symlink_to(archive_cache / "pypi")  # the release archives; the model cache stays private
    return root


def check(model: Path, matrix_path: Path, cache_dir: Path, out: Path) -> tuple[int, dict]:
    code = main(["check", str(model), "--mcore", *REVS, "--matrix", str(matrix_path), "--json", str(out),
                 "--cache-dir", str(cache_dir)])
    return code, json.loads(out.read_text())


def test_llama2_runs_where_the_family_is_partial(tmp_path, matrix_path, cache_dir, capsys):
    code, report = check(config_dir(tmp_path / "llama2"), matrix_path, cache_dir, tmp_path / "r.json")
    assert code == EXIT_OK
    assert report["family"] == "llama" and report["architecture"] == "LlamaForCausalLM"
    assert "gpt_param:rope_scaling_factor" not in report["needs"]
    assert report["revisions"]["pypi:0.10.0"]["runs"] is True, report["revisions"]["pypi:0.10.0"]
    assert report["revisions"]["pypi:0.10.0"]["blocked_by"] == []
    assert report["revisions"]["pypi:0.10.0"]["probes"] == {"cpu": "failed"}  # the family probe failed: not for it
    assert report["revisions"]["pypi:0.11.0"] == {**report["revisions"]["pypi:0.11.0"], "runs": True, "blocked_by": []}
    assert "runs on 2 of 2 revisions" in capsys.readouterr().out


def test_llama31_is_blocked_on_0_10_by_rope_scaling_and_its_probe(tmp_path, matrix_path, cache_dir, capsys):
    model = config_dir(tmp_path / "llama31", max_position_embeddings=16384, rope_theta=500000.0,
                       rope_scaling=LLAMA31_ROPE)
    code, report = check(model, matrix_path, cache_dir, tmp_path / "r.json")
    assert code == EXIT_FAILURE  # --mcore names a revision it does not run on
    blocked = report["revisions"]["pypi:0.10.0"]
    assert blocked["runs"] is False
    assert blocked["blocked_by"][0] == "gpt_param:rope_scaling_factor"
    assert any(b.startswith("probe family:llama v2(rope_parameters) failed on cpu") for b in blocked["blocked_by"])
    assert report["revisions"]["pypi:0.11.0"]["runs"] is True
    out = capsys.readouterr().out
    assert "0.10.0  blocked by gpt_param:rope_scaling_factor" in out


def test_custom_code_is_not_run_without_trust(tmp_path, matrix_path, cache_dir, capsys):
    model = tmp_path / "custom"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "my_llama",
        "auto_map": {"AutoConfig": "configuration_my_llama.MyLlamaConfig"}, **SMALL}))
    (model / "configuration_my_llama.py").write_text("raise SystemExit('checkpoint code ran')\n")
    code = main(["check", str(model), "--mcore", REVS[0], "--matrix", str(matrix_path), "--cache-dir", str(cache_dir)])
    assert code == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "trust_remote_code" in err or "trust-remote-code" in err


def test_warm_check_imports_neither_torch_nor_transformers_and_is_fast(tmp_path, matrix_path, cache_dir):
    """A second check of the same config reads its needs from the cache. Measured on the shared 2-core box:
    1.8 s wall for 32 revisions under a load average of 8.5 (0.55 s CPU); the bound here is generous."""
    model = config_dir(tmp_path / "llama2")
    argv = ["check", str(model), "--mcore", *REVS, "--matrix", str(matrix_path), "--json", str(tmp_path / "r.json"),
            "--cache-dir", str(cache_dir)]
    script = ("import sys, json; from harness.cli import main; rc = main(json.loads(sys.argv[1])); "
              "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, "
              "'transformers': 'transformers' in sys.modules}))")
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    results = []
    for _ in range(2):  # the first may derive (another edit of bridge/ changes the cache key); the second is warm
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", script, json.dumps(argv)], capture_output=True, text=True,
                              env=env, timeout=300)
        results.append((time.perf_counter() - start, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout))
    seconds, warm, stdout = results[-1]
    assert warm == {"rc": EXIT_OK, "torch": False, "transformers": False}, stdout
    assert "needs cached" in stdout
    assert seconds < 10.0, f"a warm check took {seconds:.1f}s (goal: under 2 s on an idle machine)"


def test_failed_variants_reads_the_family_probe_details():
    details = ("2/3 variants pass on cpu. v0(base): ok, max_abs_diff 0.00e+00 (<= 1e-05) | v1(tie_word_embeddings): "
               "ok, cosine 1.0 | v2(rope_parameters): refused by the bridge: UnsupportedFeatureError: no argument")
    assert failed_variants(details) == {"v2(rope_parameters)": "refused by the bridge: UnsupportedFeatureError: "
                                                               "no argument"}
    assert failed_variants("0/1 variants pass on cpu. v0(base): ImportError: no module x") == {
        "v0(base)": "ImportError: no module x"}


def test_a_hub_id_is_resolved_through_the_bridge_offline(tmp_path, matrix_path, cache_dir, monkeypatch, capsys):
    """A Hub ID goes through bridge.hub (config only, from an offline cache built here)."""
    from tests.helpers.hub_cache import add_to_hub_cache

    llama2 = config_dir(tmp_path / "llama2")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    add_to_hub_cache(tmp_path / "hub", "acme/llama-2-tiny", llama2, refs=("main",))
    code, report = check("acme/llama-2-tiny", matrix_path, cache_dir, tmp_path / "r.json")
    assert code == EXIT_OK and report["model"] == "acme/llama-2-tiny" and report["family"] == "llama"
    assert all(r["runs"] for r in report["revisions"].values())
    assert main(["check", "acme/absent", "--mcore", REVS[0], "--matrix", str(matrix_path),
                 "--cache-dir", str(cache_dir)]) == EXIT_FAILURE
    assert "acme/absent" in capsys.readouterr().err
