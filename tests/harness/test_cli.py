"""harness.cli: the command-line contract (JSON shapes, files written, exit codes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import COMMANDS, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from harness.matrix import load_matrix
from harness.probes.fold import fold_results
from harness.probes.runner import ProbeResult


@pytest.fixture()
def cache(archive_cache, tmp_path) -> list[str]:
    """A private cache root that already holds the archives the tests use."""
    root = tmp_path / "cache"
    for version in ("0.10.0", "0.11.0", "0.13.0"):
        shutil.copytree(archive_cache / "pypi" / version, root / "pypi" / version)
    return ["--cache-dir", str(root)]


def test_scan_json_shape(cache, tmp_path, release_repo, capsys):
    out = tmp_path / "scan.json"
    code = main(["scan", "pypi:0.11.0", "git:core_v0.13.0", "--repo", str(release_repo), "--json", str(out),
                 "--no-progress", *cache])
    assert code == EXIT_OK
    data = json.loads(out.read_text())
    assert [d["revision"]["spec"] for d in data] == ["pypi:0.11.0", "git:core_v0.13.0"]
    for entry in data:
        assert set(entry["revision"]) == {"spec", "version", "commit"}
        assert entry["error"] is None
        assert isinstance(entry["gpt_model_params"], list) and "vocab_size" in entry["gpt_model_params"]
        field = entry["transformer_config"]["num_layers"]
        assert {"type", "default", "declared_in"} <= set(field)
    assert data[1]["revision"]["version"] == "0.13.0" and len(data[1]["revision"]["commit"]) == 40
    assert "pypi:0.11.0 (0.11.0):" in capsys.readouterr().out


def test_scan_to_stdout(cache, capsys):
    assert main(["scan", "pypi:0.10.0", "--json", "-", "--no-progress", *cache]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)[0]["revision"]["version"] == "0.10.0"


def test_exit_codes(cache, tmp_path, synthetic_repo, capsys):
    assert main(["scan", "pypi:0.10.7", "--no-progress", *cache]) == EXIT_USAGE
    assert "closest: 0.10.0" in capsys.readouterr().err
    assert main(["scan", "git:main", "--no-progress", *cache]) == EXIT_USAGE  # submodule not initialised
    assert "--repo" in capsys.readouterr().err
    assert main(["scan", "git:broken", "--repo", str(synthetic_repo), "--no-progress",
                 "--json", str(tmp_path / "x.json"), *cache]) == EXIT_FAILURE
    assert json.loads((tmp_path / "x.json").read_text())[0]["error"].startswith("cannot parse")
    with pytest.raises(SystemExit) as exc:
        main(["scan"])
    assert exc.value.code == EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == EXIT_USAGE


def test_matrix_merge_and_error_column(cache, tmp_path, synthetic_repo):
    out = tmp_path / "m"
    code = main(["matrix", "pypi:0.10.0", "pypi:0.11.0", "git:broken", "--repo", str(synthetic_repo),
                 "--out", str(out), "--no-progress", "--no-families", "--field-history", str(tmp_path / "fh.json"), *cache])
    assert code == EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == ["features.md", "matrix.html", "matrix.json", "matrix.md"]
    data = json.loads((out / "matrix.json").read_text())
    broken = [c for c in data["cells"] if c["revision"] == "git:broken"]
    assert broken and all(c["status"] == "error" for c in broken)
    assert json.loads((tmp_path / "fh.json").read_text())["releases"] == ["0.10.0", "0.11.0"]
    assert main(["merge", str(out / "matrix.json"), str(out / "matrix.json"), "--out", str(tmp_path / "merged")]) == 0
    merged = load_matrix(tmp_path / "merged" / "matrix.json")  # provenances are indices into the file's tables
    assert next(iter(merged.cells.values()))["provenance"]["merged_from"] == str(out / "matrix.json")
    assert main(["merge", str(tmp_path / "fh.json"), "--json", "-"]) == EXIT_FAILURE  # not a matrix
    assert main(["merge", str(out / "matrix.json")]) == EXIT_USAGE  # nowhere to write: a usage error, not a failure


def test_matrix_keeps_the_probe_results_of_the_matrix_it_replaces(cache, tmp_path, capsys):
    out = tmp_path / "m"
    static = ["matrix", "pypi:0.10.0", "pypi:0.11.0", "--out", str(out), "--no-progress", "--no-families",
              "--no-field-history", *cache]
    assert main(static) == EXIT_OK
    assert "dynamic (probe) cells: none, static verdicts only (no " in capsys.readouterr().out
    warning = {"category": "DeprecationWarning", "message": "x is deprecated", "filename": "a.py", "lineno": 1}
    probes = [ProbeResult("pypi:0.11.0", "features", "passed", warnings=[warning, warning],
                          rows={"moe": {"status": "passed", "details": ""}, "extra": {"status": "failed", "details": "no"}},
                          meta={"device": "cpu", "python": "3.11.7", "mcore_version": "0.11.0"})]
    fold_results(load_matrix(out / "matrix.json"), probes, platform="cpu").save(out / "matrix.json")  # a sweep's output

    assert main(static) == EXIT_OK
    printed = capsys.readouterr().out
    assert (f"dynamic (probe) cells: included, kept from {out / 'matrix.json'}: probe results of cpu 1 revision(s) "
            "(2 cells)") in printed
    kept = load_matrix(out / "matrix.json")
    moe = kept.cell("moe", "pypi:0.11.0")
    assert moe["dynamic"]["cpu"]["status"] == "passed" and moe["dynamic"]["cpu"]["warnings"] == [warning]
    assert kept.cell("extra", "pypi:0.11.0")["dynamic"]["cpu"]["status"] == "failed"
    assert "cpu" in (out / "matrix.md").read_text()

    assert main([*static, "--static-only"]) == EXIT_OK
    assert "dynamic (probe) cells: none, static verdicts only (--static-only)" in capsys.readouterr().out
    assert not any(c.get("dynamic") for c in load_matrix(out / "matrix.json").cells.values())
    (tmp_path / "bad.json").write_text("{}")
    assert main([*static, "--dynamic-from", str(tmp_path / "bad.json")]) == EXIT_FAILURE
    assert "pass --static-only to write the static matrix without them" in capsys.readouterr().err


def test_history_bisect_diff(cache, tmp_path, synthetic_repo, capsys):
    assert main(["history", "--repo", str(synthetic_repo), "--json", str(tmp_path / "h.json"), *cache]) == 0
    entries = json.loads((tmp_path / "h.json").read_text())
    assert [e["subject"] for e in entries][:2] == ["base", "add rope"]
    assert {"commit", "added", "removed", "default_changed"} <= set(entries[0])
    assert main(["bisect", "use_rope", "--repo", str(synthetic_repo), *cache]) == EXIT_OK
    assert "use_rope appears in" in capsys.readouterr().out
    assert main(["bisect", "never_there", "--repo", str(synthetic_repo), *cache]) == EXIT_FAILURE
    assert main(["diff", "pypi:0.10.0", "pypi:0.11.0", "--no-families", "--json", str(tmp_path / "d.json"), *cache]) == EXIT_OK
    assert "attention_backend" in json.loads((tmp_path / "d.json").read_text())["transformer_config"]["added"]


def test_every_registered_command_has_help():
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0


def test_console_script_exit_code_for_usage_error():
    script = Path(sys.executable).parent / "mcore-compat"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "harness.cli"]
    proc = subprocess.run([*cmd, "scan", "pypi:9.9.9", "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == EXIT_USAGE and "unknown megatron-core release" in proc.stderr


_NOTICES_SCRIPT = (
    "import sys\n"
    "from harness.cli import main\n"
    "main(sys.argv[1:])\n"
    "import megatron.core.optimizer  # imported by the matrix's family checks: warns that TE/Apex are missing\n"
)


@pytest.mark.parametrize(("flags", "shown"), [((), False), (("-v",), True)], ids=["quiet", "verbose"])
def test_mcore_import_notices_about_missing_te_and_apex_show_only_with_verbose(tmp_path: Path, flags, shown) -> None:
    """The README's main command imports MCore in process; its TE/Apex notices are noise there (issue 14)."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = str(root)
    proc = subprocess.run([sys.executable, "-c", _NOTICES_SCRIPT, *flags, "convert", str(tmp_path / "none"),
                           str(tmp_path / "out"), "--no-progress"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert "no directory" in proc.stderr or "error" in proc.stderr  # the command itself ran (and failed: no input)
    assert ("Apex are not installed" in proc.stderr) == shown, proc.stderr[-2000:]


@pytest.mark.slow
def test_the_readme_main_command_prints_no_warning(tmp_path: Path) -> None:
    """`mcore-compat matrix` (one release, into a temporary directory) prints its summary and no warning."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "matrix", "pypi:0.16.1", "--out", str(tmp_path),
                           "--no-field-history"], cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.replace("\r", "\n").splitlines() if ln.strip() and "%|" not in ln]
    assert [ln for ln in lines if "warn" in ln.lower() or "deprecat" in ln.lower()] == [], lines
