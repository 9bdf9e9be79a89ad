"""Per-revision environments: the base env plus a revision's megatron-core first on ``PYTHONPATH``.

==================  =====================================================================================
``pypi:X``          ``pip install --no-deps --ignore-requires-python --target <cache>/envs/X-<sha8>`` from
                    the cached archive (:func:`harness.pypi.fetch_release`), built once, in a temporary
                    directory renamed into place under a file lock: a half-built env is never used
``git:REF``         the cached worktree (:func:`harness.revisions.worktree_for`)
``path:DIR``        DIR itself
``installed``       nothing prepended (the megatron-core of the base env)
==================  =====================================================================================

On a machine without the package index (the GPU machine), ``$MCORE_COMPAT_WHEELS`` names directories
of carried archives (``megatron_core-X-*.whl`` / ``megatron_core-X.tar.gz``); a wheel this interpreter
can install is taken from there before the cache and the index
(:func:`harness.probes.prepared.release_archive`).

Some releases need more than the base env has; :data:`~harness.probes.prepared.EXTRA_REQUIREMENTS` lists
what goes into a shared extra directory for them (0.8.0 imports ``pkg_resources``, gone from setuptools 81; 0.18+ import
``triton``, which the CPU torch wheel lacks), unless the base env already provides the module. A release
whose metadata declares a Python range that excludes the running interpreter is still prepared
(``--ignore-requires-python``) and flagged ``outside_python_range``.

``method="venv"`` (:mod:`harness.probes.venvs`) builds a fresh virtual environment instead; it exists
to measure what per-revision venvs would cost (``benchmarks/prepare_envs.py``), not for sweeps.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from harness.cache import default_cache_dir, file_lock
from harness.errors import HarnessError, ProbeError
from harness.probes.prepared import (
    EXTRA_REQUIREMENTS,
    PreparedRevision,
    python_range_notes,
    release_archive,
    requires_python_of,
    requires_python_of_tree,
    revision_identity,
    sha256_file,
)
from harness.probes.venvs import prepare_venv
from harness.revisions import Revision, resolve_revision, worktree_for
from harness.versions import project_root

__all__ = ["METHODS", "prepare_revision"]

log = logging.getLogger("harness.probes.envs")

METHODS = ("pythonpath", "venv")


# --- building the pythonpath env -------------------------------------------------------------------

def _pip_target(args: list[str], target: Path, *, timeout: float) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet",
           "--target", str(target), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, PIP_NO_INPUT="1"))
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"pip install {' '.join(args)} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise ProbeError(f"pip install --target {target.name} {' '.join(args)} failed "
                         f"(exit {proc.returncode}):\n{tail}")


def _build_once(dest: Path, lock: Path, build: Callable[[Path], None]) -> bool:
    """Build ``dest`` with ``build(tmp_dir)`` once: tmp dir + rename under a lock. True if reused."""
    with file_lock(lock):
        if (dest / ".complete").exists():
            return True
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        try:
            build(tmp)
            (tmp / ".complete").write_text(f"built {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            if dest.exists():  # a leftover without .complete: never used, replaced
                shutil.rmtree(dest)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return False


def _extra_dirs(version: str | None, cache_dir: Path, *, timeout: float) -> tuple[list[str], list[str]]:
    dirs, notes = [], []
    for extra in EXTRA_REQUIREMENTS:
        if not extra.applies_to(version) or extra.provided_by_base():
            continue
        dest = cache_dir / "envs" / f"extra-{extra.slug}"
        _build_once(dest, cache_dir / "locks" / f"env-extra-{extra.slug}.lock",
                    lambda tmp, req=extra.requirement: _pip_target([req], tmp, timeout=timeout))
        dirs.append(str(dest))
        notes.append(f"with {extra.requirement} ({extra.reason})")
    return dirs, notes


def _child_env(pythonpath: tuple[str, ...]) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([*pythonpath, str(project_root())])}


def _prepare_pythonpath(rev: Revision, cache_dir: Path, *, timeout: float) -> PreparedRevision:
    requires: str | None = None
    reused = True
    if rev.kind == "pypi":
        archive = release_archive(rev.ref, cache_dir)
        sha = sha256_file(archive)
        identity = f"sha256:{sha}"
        requires = requires_python_of(archive)
        dest = cache_dir / "envs" / f"{rev.ref}-{sha[:8]}"
        args = ["--no-deps", "--ignore-requires-python", str(archive)]
        reused = _build_once(dest, cache_dir / "locks" / f"env-{dest.name}.lock",
                             lambda tmp: _pip_target(args, tmp, timeout=timeout))
        paths = [str(dest)]
    elif rev.kind == "git":
        root = worktree_for(rev, repo=rev.repo, cache_dir=cache_dir)
        identity = revision_identity(rev, cache_dir=cache_dir)
        requires = requires_python_of_tree(root)
        paths = [str(root)]
    elif rev.kind == "path":
        identity = revision_identity(rev, cache_dir=cache_dir)
        requires = requires_python_of_tree(Path(rev.ref))
        paths = [rev.ref]
    else:
        identity = revision_identity(rev, cache_dir=cache_dir)
        paths = []
    extra, notes = _extra_dirs(rev.version, cache_dir, timeout=timeout)
    pythonpath = tuple(paths + extra)
    outside, range_notes = python_range_notes(requires, platform.python_version())
    return PreparedRevision(
        spec=rev.spec, version=rev.version, commit=rev.commit, python=sys.executable, pythonpath=pythonpath,
        env=_child_env(pythonpath), method="pythonpath", prepare_s=0.0, notes=(*range_notes, *notes),
        identity=identity, requires_python=requires, outside_python_range=outside, reused=reused,
    )


def prepare_revision(rev: Revision | str, *, cache_dir: Path | None = None, method: str = "pythonpath",
                     repo: str | None = None, timeout_s: float = 1800.0) -> PreparedRevision:
    """Make ``rev`` importable by a probe subprocess (see the module docstring).

    Failures to fetch or install are returned in :attr:`PreparedRevision.error`, so a sweep goes on
    and reports them per cell.

    Raises:
        RevisionError: ``rev`` is malformed or unknown (a usage error, not a revision's failure).
        ProbeError: ``method`` is not one of :data:`METHODS`.
    """
    if method not in METHODS:
        raise ProbeError(f"unknown preparation method {method!r}: expected one of {', '.join(METHODS)}")
    cache_dir = cache_dir or default_cache_dir()
    start = time.perf_counter()
    rev = resolve_revision(rev, repo=repo, cache_dir=cache_dir)
    try:
        if method == "venv":
            prepared = prepare_venv(rev, cache_dir, timeout=timeout_s)
        else:
            prepared = _prepare_pythonpath(rev, cache_dir, timeout=timeout_s)
    except HarnessError as exc:
        log.warning("%s: could not prepare: %s", rev.spec, exc)
        return PreparedRevision(spec=rev.spec, version=rev.version, commit=rev.commit, python=sys.executable,
                                pythonpath=(), env={}, method=method, prepare_s=time.perf_counter() - start,
                                error=f"prepare failed: {exc}")
    elapsed = time.perf_counter() - start
    log.info("%s: prepared (%s, %s) in %.1fs", rev.spec, method, "reused" if prepared.reused else "built", elapsed)
    return replace(prepared, prepare_s=elapsed)
