"""nox sessions. One list of revisions (harness.versions) feeds nox, the matrix and the CLI.

    nox -s tests                              # the default fast suite
    nox -s "compat(mcore='pypi:0.16.1')"      # the bridge's tests against one MCore release
    nox -s matrix                             # the static version-support matrix into matrices/
    nox -s slow browser lint
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent))
from harness.versions import DYNAMIC_RELEASES, version_key  # noqa: E402

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"  # first, so pip takes the local CPU wheel
REVISIONS = [f"pypi:{v}" for v in DYNAMIC_RELEASES]


def _install_project(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[test]")


@nox.session
def tests(session: nox.Session) -> None:
    """The default suite (what CI runs)."""
    _install_project(session)
    session.run("python", "-m", "pytest", "-n", "auto", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Slow sweeps (marker ``slow``)."""
    _install_project(session)
    session.run("python", "-m", "pytest", "-n", "auto", "-m", "slow", *session.posargs)


@nox.session
@nox.parametrize("mcore", REVISIONS)
def compat(session: nox.Session, mcore: str) -> None:
    """The bridge's CPU tests against one released megatron-core (sources outside Python's range: --ignore-requires-python)."""
    if not mcore.startswith("pypi:"):
        session.error(f"compat takes pypi:X.Y.Z revisions, found {mcore!r}")
    version = mcore.removeprefix("pypi:")
    _install_project(session)
    if version_key(version) >= (0, 17, 0):
        session.install("--no-deps", "--ignore-requires-python", f"megatron-core=={version}")
    else:
        session.install(f"megatron-core=={version}")
    if version_key(version) < (0, 9, 0):
        session.install("setuptools<81")  # 0.8.0 imports pkg_resources
    session.run("python", "-m", "pytest", "-n", "auto", "tests/bridge", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def matrix(session: nox.Session) -> None:
    """The version-support matrix for every release (writes matrices/)."""
    _install_project(session)
    session.run("mcore-compat", "matrix", "--out", "matrices/", *session.posargs)


@nox.session
def browser(session: nox.Session) -> None:
    """Open the HTML matrix in Debian's chromium and read a cell (marker ``browser``)."""
    session.run("apt-get", "install", "-y", "-q", "chromium", external=True)
    _install_project(session)
    session.run("python", "-m", "pytest", "-m", "browser", "tests/harness", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "--select", "E9,F63,F7,F82,F401", "bridge", "harness", "tests")
