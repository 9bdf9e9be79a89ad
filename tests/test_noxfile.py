"""noxfile.py: its sessions come from the one list of revisions (harness.versions) and share one environment."""

from __future__ import annotations

import importlib.util
import os
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


class RecordingSession:
    """The part of ``nox.Session`` the sessions use; ``run`` records instead of running."""

    def __init__(self, env_dir: Path) -> None:
        self.env_dir = str(env_dir / "this")
        self.posargs: list[str] = []
        self.runs: list[tuple[tuple[str, ...], dict]] = []
        (env_dir / "base" / "bin").mkdir(parents=True)
        (env_dir / "base" / "bin" / "mcore-compat").touch()

    def run(self, *args: str, **kwargs) -> None:
        self.runs.append((args, kwargs))

    def error(self, message: str) -> None:
        raise AssertionError(message)


def _pytest_env(sessions, name: str, tmp_path: Path) -> dict | None:
    session = RecordingSession(tmp_path / name)
    sessions[name](session)
    (args, kwargs), = [(a, k) for a, k in session.runs if a[1:3] == ("-m", "pytest")]
    return kwargs.get("env")


def test_gpu_and_browser_sessions_require_what_they_test(noxfile, sessions, tmp_path):
    from tests.helpers.required import REQUIRE_ENV

    assert noxfile.REQUIRE_ENV == REQUIRE_ENV
    assert _pytest_env(sessions, "gpu", tmp_path) == {REQUIRE_ENV: "gpu"}
    assert _pytest_env(sessions, "browser", tmp_path) == {REQUIRE_ENV: "browser"}
    assert _pytest_env(sessions, "tests", tmp_path) is None  # the default suite skips what is absent


SKIPPING_TESTS = '''
import pytest

@pytest.mark.gpu
@pytest.mark.skipif(True, reason="needs a CUDA GPU")
def test_on_gpu():
    pass

@pytest.mark.browser
def test_in_browser():
    pytest.skip("chromium is not installed")

def test_unmarked_skip():
    pytest.skip("nothing to do with hardware")

@pytest.mark.gpu
@pytest.mark.xfail(reason="known", strict=True)
def test_expected_to_fail_on_gpu():
    assert False
'''


@pytest.mark.parametrize(("args", "require", "failed"), [
    (["-m", "gpu or browser or not gpu"], "", set()),  # nothing required: skips stay skips
    (["-m", "gpu or browser or not gpu"], "gpu,browser", {"test_on_gpu", "test_in_browser"}),  # as nox sets it
    (["-m", "browser"], "", {"test_in_browser"}),  # asked for on the command line
])
def test_a_required_marker_turns_its_skips_into_failures(tmp_path, args, require, failed):
    (tmp_path / "test_skipping.py").write_text(SKIPPING_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: g\n    browser: b\n")
    env = {k: v for k, v in os.environ.items() if k != "MCORE_COMPAT_REQUIRE"}
    # COLUMNS: pytest cuts summary lines to the terminal's width (80 where stdout is no terminal, as in CI)
    env |= {"MCORE_COMPAT_REQUIRE": require, "PYTHONPATH": str(ROOT), "COLUMNS": "1000"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.helpers.required", "-p", "no:cacheprovider",
                           "-p", "no:randomly", "-rA", "-q", *args, str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    # a skip in setup (skipif) is reported as ERROR, one in the test as FAILED: either fails the run
    reported = {line.split("::")[-1].split()[0] for line in proc.stdout.splitlines()
                if line.startswith(("FAILED", "ERROR"))}
    assert reported == failed, proc.stdout
    assert proc.returncode == (1 if failed else 0), proc.stdout
    summary = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert sum("but this run requires" in line for line in summary) == len(failed), proc.stdout
    assert "xfailed" in proc.stdout.splitlines()[-1] or args == ["-m", "browser"]


def test_only_markers_that_skip_for_missing_hardware_can_be_required(pytestconfig):
    from tests.helpers.required import REQUIRE_ENV, required_markers

    assert required_markers(pytestconfig, {REQUIRE_ENV: " gpu, browser "}) == {"gpu", "browser"}
    assert required_markers(pytestconfig, {}) == set()  # this run's -m is the default expression
    with pytest.raises(pytest.UsageError, match=r"expected markers among \['browser', 'gpu'\], found \['slow'\]"):
        required_markers(pytestconfig, {REQUIRE_ENV: "gpu,slow"})
