"""``mcore-compat sweep``: a hanging revision becomes a timeout cell, folded into a given static matrix
and rendered; the probe's whole process group is killed."""

from __future__ import annotations

import json
import time

from harness.cli import main
from harness.features import feature_by_name
from harness.introspect import Introspector
from harness.matrix import build_matrix, load_matrix
from harness.requirements import requirement_rows
from tests.harness.probes.conftest import pid_alive


def test_sweep_folds_a_timeout_into_the_given_matrix(broken_revisions, tmp_path, capsys):
    static = tmp_path / "static.json"  # feature rows only (deriving the families' rows imports the bridge)
    intro = Introspector(tmp_path / "cache").introspect(f"path:{broken_revisions['hang']}")
    build_matrix([intro], requirement_rows([], [feature_by_name("gqa")])).save(static)
    out = tmp_path / "out"
    code = main(["sweep", f"path:{broken_revisions['hang']}", "--tests", "family:llama", "--timeout", "4",
                 "--matrix", str(static), "--out", str(out), "--no-progress", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "1 probes (1 run, 0 cached)" in printed and "1 timeout" in printed

    matrix = load_matrix(out / "matrix.json")
    spec = matrix.revisions[0]["spec"]
    assert [r["name"] for r in matrix.rows] == ["gqa", "llama"]  # the probe's row is added
    assert matrix.cell("gqa", spec)["status"] == "missing" and "dynamic" not in matrix.cell("gqa", spec)
    cell = matrix.cell("llama", spec)
    assert cell["status"] == "unchecked"  # no static verdict for a row the static matrix lacks
    assert cell["dynamic"]["cpu"]["status"] == "timeout"
    assert "timed out after 4s" in cell["dynamic"]["cpu"]["details"]
    assert "agreement" not in cell  # nothing to compare with
    assert matrix.revisions[0]["dynamic"]["cpu"]["tests"]["family:llama"]["status"] == "timeout"

    sweep = json.loads((out / "sweep-cpu.json").read_text())
    assert sweep["platform"] == "cpu" and sweep["revisions"][0]["spec"] == spec
    assert sweep["results"][0]["status"] == "timeout" and sweep["total_s"] > 0
    md = (out / "matrix.md").read_text()
    assert "## Probe runs per revision" in md and "`family:llama`: timeout: timed out after 4s" in md
    assert 'data-cpu="timeout"' in (out / "matrix.html").read_text()

    pid_file = broken_revisions["hang"] / "megatron" / "core" / "grandchild.pid"
    if pid_file.exists():  # the probe got as far as MCore before its 4 s ran out (usual, not certain under load)
        pid = int(pid_file.read_text())
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(pid)


def test_a_sweep_into_a_directory_keeps_its_matrix_results(broken_revisions, tmp_path, capsys):
    static = tmp_path / "static.json"
    rev = f"path:{broken_revisions['importerr']}"
    intro = Introspector(tmp_path / "cache").introspect(rev)
    build_matrix([intro], requirement_rows([], [feature_by_name("gqa")])).save(static)
    out, cache = tmp_path / "out", str(tmp_path / "cache")
    common = ["--tests", "import", "--out", str(out), "--no-progress", "--cache-dir", cache]
    assert main(["sweep", rev, "--matrix", str(static), *common]) == 0
    assert main(["sweep", rev, "--platform", "gpu", *common]) == 0  # no --matrix: out/matrix.json is folded into
    assert "folding into" in capsys.readouterr().err
    both = load_matrix(out / "matrix.json")
    assert set(both.revisions[0]["dynamic"]) == {"cpu", "gpu"}
    assert [r["name"] for r in both.rows][0] == "gqa"  # the given static matrix's rows are still there
    assert main(["sweep", rev, "--platform", "gpu", "--fresh-matrix", *common]) == 0
    assert set(load_matrix(out / "matrix.json").revisions[0]["dynamic"]) == {"gpu"}
