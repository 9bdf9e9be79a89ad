"""noxfile.py: its sessions come from the one list of revisions (harness.versions) and share one environment."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nox.registry
import pytest

from harness.cli import build_parser
from harness.versions import DYNAMIC_RELEASES, version_key

ROOT = Path(__file__).resolve().parent.parent
NEEDS_PROJECT = ("tests", "slow", "compat", "matrix", "browser", "gpu")


@pytest.fixture(scope="module")
def noxfile():
    """The noxfile, imported once (importing it registers its sessions with nox)."""
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sessions(noxfile) -> dict:
    return dict(nox.registry.get())


def test_compat_sessions_are_the_dynamic_releases_as_pypi_and_git_specs(sessions):
    params = [p.args[0] for p in sessions["compat"].parametrize]
    assert params == [*(f"pypi:{v}" for v in DYNAMIC_RELEASES), *(f"git:core_v{v}" for v in DYNAMIC_RELEASES)]
    assert min(DYNAMIC_RELEASES, key=version_key) == "0.8.0"  # the bridge's supported range starts there


def test_sessions_needing_the_project_share_the_base_environment(sessions):
    assert {"base", "lint", *NEEDS_PROJECT} <= set(sessions)
    for name in NEEDS_PROJECT:
        assert sessions[name].venv_backend == "none", f"{name} would build its own environment"
        assert "base" in sessions[name].requires


def test_nox_lists_both_spellings_of_a_revision():
    listing = subprocess.run([sys.executable, "-m", "nox", "-l", "-f", str(ROOT / "noxfile.py")],
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
    listed = {line.split(" -> ")[0][2:] for line in listing.splitlines() if line[:2] in ("* ", "- ")}
    compat = {name for name in listed if name.startswith("compat(")}
    assert compat == {f"compat(mcore='{kind}{v}')" for v in DYNAMIC_RELEASES for kind in ("pypi:", "git:core_v")}
    assert "compat(mcore='pypi:0.16.1')" in listed and "compat(mcore='git:core_v0.15.0')" in listed


def test_harness_command_lines_parse_with_the_cli(noxfile):
    """Renaming a flag of `mcore-compat matrix` / `sweep` breaks this test, not the next nox run."""
    parser = build_parser()
    static, sweep = (parser.parse_args(list(cmd)) for cmd in noxfile.MATRIX_COMMANDS)
    assert (static.command, str(static.out)) == ("matrix", "matrices")
    assert sweep.command == "sweep" and str(sweep.matrix) == "matrices/matrix.json"
    assert sweep.revisions == [f"pypi:{v}" for v in DYNAMIC_RELEASES] and sweep.device == "cpu"
    for mcore in ("pypi:0.16.1", "git:core_v0.15.0"):
        args = parser.parse_args([*noxfile.compat_command(mcore, Path("out")), "--repo", "r", "--tests", "import"])
        assert (args.command, args.revisions, args.repo, args.tests) == ("sweep", [mcore], "r", "import")
