"""nox sessions. One list of revisions (harness.versions) feeds nox, the matrix and the CLI.

    nox -s tests                                      # the default fast suite
    nox -s "compat(mcore='pypi:0.16.1')"              # the dynamic probes against one MCore revision
    nox -s "compat(mcore='git:core_v0.15.0')" -- --repo /tmp/mcore-releases --tests import,family:llama
    nox -s matrix                                     # static matrix of every release + CPU probes -> matrices/
    nox -s slow browser lint

Every session that needs the project runs in ONE environment, the ``base`` session's (torch's CPU
wheel first, then the project with its test extras; reused between runs). ``compat`` does not build
an environment per MCore revision: the probes (``mcore-compat sweep``) put the revision's sources
first on ``PYTHONPATH`` of a subprocess of that environment (see harness/probes/envs.py).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent


def _versions():
    """harness/versions.py alone (stdlib only): nox may run from an interpreter without the project's deps."""
    spec = importlib.util.spec_from_file_location("_mcore_compat_versions", ROOT / "harness" / "versions.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


DYNAMIC_RELEASES: tuple[str, ...] = _versions().DYNAMIC_RELEASES

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"  # first, so pip takes the local CPU wheel
RELEASE_SPECS = [f"pypi:{v}" for v in DYNAMIC_RELEASES]
COMPAT_REVISIONS = [*RELEASE_SPECS, *(f"git:core_v{v}" for v in DYNAMIC_RELEASES)]
"""Each release from the bridge's range, as its PyPI archive and as its upstream tag."""


def _base_bin(session: nox.Session) -> Path:
    """The shared environment's ``bin`` (the ``base`` session's virtualenv, next to this session's)."""
    path = Path(session.env_dir).parent / "base" / "bin"
    if not (path / "mcore-compat").exists():
        session.error(f"expected the shared environment at {path.parent} (nox -s base), found none")
    return path


def _harness(session: nox.Session, *args: str) -> None:
    session.run(str(_base_bin(session) / "mcore-compat"), *args, external=True)


REQUIRE_ENV = "MCORE_COMPAT_REQUIRE"
"""Markers a session requires: their tests fail instead of skipping where the GPU / browser is absent
(tests/helpers/required.py reads it)."""


def _pytest(session: nox.Session, *args: str, require: tuple[str, ...] = ()) -> None:
    env = {REQUIRE_ENV: ",".join(require)} if require else None
    session.run(str(_base_bin(session) / "python"), "-m", "pytest", *args, *session.posargs, env=env, external=True)


@nox.session
def base(session: nox.Session) -> None:
    """The one environment every other session runs in (installed once, reinstalled when pyproject.toml changes)."""
    stamp = Path(session.virtualenv.location) / ".mcore-compat-installed"
    if stamp.exists() and stamp.stat().st_mtime >= (ROOT / "pyproject.toml").stat().st_mtime:
        session.log(f"up to date ({stamp})")
        return
    session.install(TORCH)
    session.install("-e", ".[test]")
    stamp.touch()


@nox.session(venv_backend="none", requires=["base"])
def tests(session: nox.Session) -> None:
    """The default suite (what CI runs)."""
    _pytest(session, "-n", "auto")


@nox.session(venv_backend="none", requires=["base"])
def slow(session: nox.Session) -> None:
    """Slow sweeps (marker ``slow``)."""
    _pytest(session, "-n", "auto", "-m", "slow")


def _disagreements(matrix_json: Path, spec: str) -> list[str]:
    """Cells of ``spec`` whose probes contradict the static verdict without a known explanation."""
    data = json.loads(matrix_json.read_text("utf-8"))
    return [f"{c['row']}: static {c['status']}, {c.get('explanation') or c.get('details', '')}"
            for c in data["cells"] if c["revision"] == spec and c.get("agreement") == "disagree"]


def compat_command(mcore: str, out: Path) -> tuple[str, ...]:
    """The ``mcore-compat`` command line of ``compat(mcore)`` (posargs and ``--repo`` follow)."""
    return ("sweep", mcore, "--out", str(out), "--no-progress")


@nox.session(venv_backend="none", requires=["base"])
@nox.parametrize("mcore", COMPAT_REVISIONS)
def compat(session: nox.Session, mcore: str) -> None:
    """The dynamic probes against one MCore revision (posargs go to `mcore-compat sweep`, e.g. --repo, --tests)."""
    out = Path(session.env_dir) / "report"
    extra = list(session.posargs)
    if mcore.startswith("git:") and "--repo" not in extra and not (ROOT / "3rdparty" / "Megatron-LM" / ".git").exists():
        # no Megatron-LM clone here: the release's files from PyPI, as a one-commit repository tagged core_vX.Y.Z
        repo = Path(session.env_dir) / "release-repo"
        session.log(f"3rdparty/Megatron-LM is not initialised: {mcore} from a release repository at {repo}")
        session.run(str(_base_bin(session) / "python"), str(ROOT / "scripts" / "build_release_repo.py"),
                    "--dest", str(repo), "--versions", mcore.removeprefix("git:core_v"), external=True)
        extra += ["--repo", str(repo)]
    _harness(session, *compat_command(mcore, out), *extra)
    data = json.loads((out / "matrix.json").read_text("utf-8"))
    spec = next((r["spec"] for r in data["revisions"] if r.get("dynamic")), None)
    if spec is None:
        session.error(f"{mcore}: the sweep wrote no probe results into {out / 'matrix.json'}")
    bad = _disagreements(out / "matrix.json", spec)
    if bad:
        listing = "\n  ".join(bad)
        session.error(f"{mcore}: probes disagree with the static verdicts ({out / 'matrix.md'}):\n  {listing}")
    session.log(f"{mcore}: probes agree with the static verdicts (or are explained); report in {out}")


MATRIX_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("matrix", "--out", "matrices/", "--no-progress"),
    ("sweep", *RELEASE_SPECS, "--matrix", "matrices/matrix.json", "--out", "matrices/", "--no-progress"),
)
"""The ``mcore-compat`` command lines of the matrix session (posargs go to the sweep)."""


@nox.session(venv_backend="none", requires=["base"])
def matrix(session: nox.Session) -> None:
    """The version-support matrix into matrices/: the static scan of every release, then the CPU probes folded in."""
    static, sweep = MATRIX_COMMANDS
    _harness(session, *static)
    _harness(session, *sweep, *session.posargs)


@nox.session(venv_backend="none", requires=["base"])
def gpu(session: nox.Session) -> None:
    """GPU tests (marker ``gpu``: staging slots, device load and export); needs two CUDA GPUs, never runs in CI.
    A test that skips for lack of them fails. Results are committed in matrices/gpu/ (pytest-gpu.txt)."""
    _pytest(session, "-m", "gpu", "-rA", "tests/gpu", require=("gpu",))


@nox.session(venv_backend="none", requires=["base"])
def browser(session: nox.Session) -> None:
    """Open the HTML matrix in Debian's chromium and read a cell (marker ``browser``; fails without chromium)."""
    session.run("apt-get", "install", "-y", "-q", "chromium", external=True)
    _pytest(session, "-m", "browser", "tests/harness", require=("browser",))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: syntax errors, undefined names, unused imports."""
    session.install("ruff")
    session.run("ruff", "check", "--select", "E9,F63,F7,F82,F401", "bridge", "harness", "tests", "noxfile.py")
