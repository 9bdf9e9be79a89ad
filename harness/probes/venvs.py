"""``method="venv"``: a fresh virtual environment per release, to measure what that would cost.

Order matters on a CPU machine: ``torch==2.13.0`` first (pip then takes the CPU wheel instead of a
multi-GB CUDA build), then the project's own dependencies, then the release's archive (with its
dependencies; ``--no-deps --ignore-requires-python`` for a release outside this Python's declared
range, as ``noxfile.py`` does). A venv is not relocatable, so it is built in place under a lock and
marked ``.complete`` at the end; one without the mark is deleted and rebuilt, never used.

Sweeps use ``method="pythonpath"`` (:mod:`harness.probes.envs`, which dispatches here for ``venv``);
this module backs the comparison in ``benchmarks/RESULTS_probes.md``.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from harness.cache import file_lock
from harness.errors import ProbeError
from harness.probes.prepared import (
    EXTRA_REQUIREMENTS,
    PreparedRevision,
    python_range_notes,
    release_archive,
    requires_python_of,
    revision_identity,
)
from harness.revisions import Revision
from harness.versions import project_root

__all__ = ["TORCH_REQUIREMENT", "prepare_venv", "project_dependencies"]

log = logging.getLogger("harness.probes.venvs")

TORCH_REQUIREMENT = "torch==2.13.0"
_SKIP = {"torch", "megatron-core"}


def project_dependencies() -> list[str]:
    """The project's declared dependencies, less torch (installed first) and megatron-core."""
    data = tomllib.loads((project_root() / "pyproject.toml").read_text("utf-8"))
    deps = []
    for text in data["project"]["dependencies"]:
        try:
            name = Requirement(text).name.lower().replace("_", "-")
        except InvalidRequirement as exc:
            raise ProbeError(f"pyproject.toml: unreadable dependency {text!r} ({exc})") from exc
        if name not in _SKIP:
            deps.append(text)
    return deps


def _run(cmd: list[str], *, timeout: float, what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1"))
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"{what} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise ProbeError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def _build(dest: Path, archive: Path, version: str, outside: bool, *, timeout: float) -> list[str]:
    python = dest / "bin" / "python"
    steps: list[tuple[str, list[str]]] = [
        ("create venv", [sys.executable, "-m", "venv", str(dest)]),
        (f"pip install {TORCH_REQUIREMENT}", [str(python), "-m", "pip", "install", "-q", TORCH_REQUIREMENT]),
        ("pip install project dependencies", [str(python), "-m", "pip", "install", "-q", *project_dependencies()]),
    ]
    pin = ["--no-deps", "--ignore-requires-python"] if outside else []
    steps.append((f"pip install {archive.name}", [str(python), "-m", "pip", "install", "-q", *pin, str(archive)]))
    notes = []
    for extra in EXTRA_REQUIREMENTS:
        if extra.applies_to(version):
            steps.append((f"pip install {extra.requirement}",
                          [str(python), "-m", "pip", "install", "-q", extra.requirement]))
            notes.append(f"with {extra.requirement} ({extra.reason})")
    for what, cmd in steps:
        start = time.perf_counter()
        _run(cmd, timeout=timeout, what=what)
        log.info("%s: %s in %.1fs", dest.name, what, time.perf_counter() - start)
    return notes


def prepare_venv(rev: Revision, cache_dir: Path, *, timeout: float) -> PreparedRevision:
    """A venv under ``<cache>/venvs/<version>-<sha8>`` holding torch, the project's deps and the release.

    Raises:
        ProbeError: a non-``pypi:`` revision, or a failed step (its pip output included).
    """
    if rev.kind != "pypi":
        raise ProbeError(f"{rev.spec}: method 'venv' takes pypi:X.Y.Z revisions only (use 'pythonpath')")
    archive = release_archive(rev.ref, cache_dir)
    identity = revision_identity(rev, cache_dir=cache_dir)
    requires = requires_python_of(archive)
    outside, range_notes = python_range_notes(requires, platform.python_version())
    dest = cache_dir / "venvs" / f"{rev.ref}-{identity.removeprefix('sha256:')[:8]}"
    with file_lock(cache_dir / "locks" / f"venv-{dest.name}.lock"):
        reused = (dest / ".complete").exists()
        notes: list[str] = []
        if reused:
            notes = [f"with {e.requirement} ({e.reason})" for e in EXTRA_REQUIREMENTS if e.applies_to(rev.version)]
        else:
            shutil.rmtree(dest, ignore_errors=True)
            try:
                notes = _build(dest, archive, rev.ref, outside, timeout=timeout)
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
            (dest / ".complete").write_text(rev.spec + "\n")
    return PreparedRevision(
        spec=rev.spec, version=rev.version, commit=rev.commit, python=str(dest / "bin" / "python"),
        pythonpath=(), env={"PYTHONPATH": str(project_root())}, method="venv", prepare_s=0.0,
        notes=(*range_notes, *notes), identity=identity, requires_python=requires, outside_python_range=outside,
        reused=reused,
    )
