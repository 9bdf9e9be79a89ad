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
can install is taken from there before the cache and the index (:func:`release_archive`).

Some releases need more than the base env has; :data:`EXTRA_REQUIREMENTS` lists what goes into a
shared extra directory for them (0.8.0 imports ``pkg_resources``, gone from setuptools 81; 0.18+ import
``triton``, which the CPU torch wheel lacks), unless the base env already provides the module. A release
whose metadata declares a Python range that excludes the running interpreter is still prepared
(``--ignore-requires-python``) and flagged ``outside_python_range``.

``method="venv"`` (:mod:`harness.probes.venvs`) builds a fresh virtual environment instead; it exists
to measure what per-revision venvs would cost (``benchmarks/prepare_envs.py``), not for sweeps.
"""

from __future__ import annotations

import email.parser
import functools
import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from harness.cache import default_cache_dir, file_lock
from harness.errors import HarnessError, ProbeError
from harness.pypi import fetch_release
from harness.revisions import Revision, resolve_revision, worktree_for
from harness.versions import project_root, version_key

__all__ = [
    "EXTRA_REQUIREMENTS",
    "METHODS",
    "ExtraRequirement",
    "PreparedRevision",
    "prepare_revision",
    "WHEELS_ENV",
    "python_range_notes",
    "release_archive",
    "requires_python_of",
    "revision_identity",
]

log = logging.getLogger("harness.probes.envs")

METHODS = ("pythonpath", "venv")
WHEELS_ENV = "MCORE_COMPAT_WHEELS"


@dataclass(frozen=True)
class ExtraRequirement:
    """A package some releases import but neither declare nor find in the base env."""

    requirement: str
    before: str | None
    """First release that no longer needs it (exclusive upper bound; None: still needed)."""
    reason: str
    since: str | None = None
    """First release that needs it (inclusive lower bound; None: every release before ``before``)."""
    module: str | None = None
    """The import it provides; when the base env already imports it, nothing is installed."""

    def provided_by_base(self) -> bool:
        return self.module is not None and importlib.util.find_spec(self.module) is not None

    def applies_to(self, version: str | None) -> bool:
        if version is None:
            return False
        key = version_key(version)
        if self.since is not None and key < version_key(self.since):
            return False
        return self.before is None or key < version_key(self.before)

    @property
    def slug(self) -> str:
        return "".join(ch if ch.isalnum() or ch in "._" else "-" for ch in self.requirement.replace("<", "-lt"))


EXTRA_REQUIREMENTS: tuple[ExtraRequirement, ...] = (
    ExtraRequirement("setuptools<81", before="0.9.0", module="pkg_resources",
                     reason="megatron-core 0.8.0 imports pkg_resources, which setuptools 81 removed"),
    ExtraRequirement("triton", since="0.18.0", before=None, module="triton",
                     reason="megatron-core 0.18+ imports triton unguarded (transformer/moe/paged_stash.py, "
                            "reached from pipeline_parallel.schedules and gpt_model); torch's CPU wheel has no "
                            "triton, and importing it needs no GPU"),
)


@dataclass(frozen=True)
class PreparedRevision:
    """A revision ready to be imported by a probe subprocess.

    Attributes:
        spec: the canonical revision spec.
        version / commit: what is known of the revision (commit for git and tagged releases).
        python: the interpreter that runs probes (this one, or a venv's).
        pythonpath: directories put first on ``PYTHONPATH`` (the revision's sources, then extras).
        env: variables the probe subprocess gets on top of the caller's (``PYTHONPATH`` included:
            the revision's directories, then the project root).
        method: ``pythonpath`` or ``venv``.
        prepare_s: seconds this call spent (near 0 when the env was already built).
        notes: facts a report should show (e.g. ``outside declared Python range (requires >=3.12)``).
        error: why the revision could not be prepared (probes then report ``error`` with it).
        identity: the revision's content identity, part of every probe's cache key
            (``sha256:<archive>``, ``git:<commit>``, ``tree:<sha256 of megatron/>``).
        python_version: ``X.Y.Z`` of :attr:`python`.
        requires_python: the release's declared ``Requires-Python`` (None if none or unknown).
        outside_python_range: True when ``requires_python`` excludes :attr:`python_version`.
        reused: True when the env already existed.
    """

    spec: str
    version: str | None
    commit: str | None
    python: str
    pythonpath: tuple[str, ...]
    env: dict[str, str]
    method: str
    prepare_s: float
    notes: tuple[str, ...] = ()
    error: str | None = None
    identity: str = ""
    python_version: str = field(default_factory=platform.python_version)
    requires_python: str | None = None
    outside_python_range: bool = False
    reused: bool = False


# --- identity and metadata -------------------------------------------------------------------------

def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tree_digest(root: Path) -> str:
    """SHA-256 over the relative paths and bytes of every file under ``root/megatron``."""
    digest = hashlib.sha256()
    base = root / "megatron"
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel or rel.endswith(".pyc"):
            continue
        digest.update(rel.encode() + b"\0")
        digest.update(_sha256_file(path).encode())
    return digest.hexdigest()


def _installable(path: Path) -> bool:
    """A wheel whose tags this interpreter accepts, or any sdist."""
    if not path.name.endswith(".whl"):
        return path.name.endswith((".tar.gz", ".zip"))
    try:
        tags = parse_wheel_filename(path.name)[3]
    except InvalidWheelFilename:
        return False
    return not tags.isdisjoint(_sys_tags())


@functools.lru_cache(maxsize=1)
def _sys_tags() -> frozenset[Tag]:
    return frozenset(sys_tags())


def release_archive(version: str, cache_dir: Path) -> Path:
    """The archive of ``megatron-core==version``: a carried one from ``$MCORE_COMPAT_WHEELS`` that this
    interpreter can install (wheels first), else the cached / downloaded one (:func:`fetch_release`).

    Raises:
        SourceError: no carried archive fits and the download fails.
    """
    for folder in filter(None, os.environ.get(WHEELS_ENV, "").split(os.pathsep)):
        found = sorted(Path(folder).glob(f"megatron_core-{version}[-.]*"), key=lambda p: not p.name.endswith(".whl"))
        usable = [p for p in found if _installable(p)]
        if usable:
            return usable[0]
    return fetch_release(version, cache_dir)


def revision_identity(rev: Revision, *, cache_dir: Path | None = None) -> str:
    """The content identity of a resolved revision, without installing anything.

    Raises:
        HarnessError: the archive cannot be fetched or the tree cannot be read.
    """
    cache_dir = cache_dir or default_cache_dir()
    if rev.kind == "pypi":
        return "sha256:" + _sha256_file(release_archive(rev.ref, cache_dir))
    if rev.kind == "git":
        if not rev.commit:
            raise ProbeError(f"{rev.spec}: expected a resolved commit (resolve_revision first), found none")
        return f"git:{rev.commit}"
    return "tree:" + _tree_digest(worktree_for(rev, cache_dir=cache_dir))


def requires_python_of(archive: Path) -> str | None:
    """``Requires-Python`` of a wheel's METADATA or an sdist's PKG-INFO (None when absent)."""
    text: str | None = None
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            name = next((n for n in zf.namelist() if n.endswith((".dist-info/METADATA", "PKG-INFO"))
                         and n.count("/") <= 1), None)
            text = zf.read(name).decode("utf-8", "replace") if name else None
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            member = next((m for m in tf.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")), None)
            handle = tf.extractfile(member) if member else None
            text = handle.read().decode("utf-8", "replace") if handle else None
    if text is None:
        return None
    value = email.parser.Parser().parsestr(text, headersonly=True).get("Requires-Python")
    return value.strip() if value else None


def _requires_python_of_tree(root: Path) -> str | None:
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("project", {}).get("requires-python")
    return value if isinstance(value, str) else None


def python_range_notes(requires: str | None, python_version: str) -> tuple[bool, tuple[str, ...]]:
    if not requires:
        return False, ()
    try:
        inside = SpecifierSet(requires).contains(python_version, prereleases=True)
    except InvalidSpecifier:
        return False, (f"unreadable Requires-Python {requires!r}",)
    if inside:
        return False, ()
    return True, (f"outside declared Python range (requires {requires}; running {python_version})",)


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
        sha = _sha256_file(archive)
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
        requires = _requires_python_of_tree(root)
        paths = [str(root)]
    elif rev.kind == "path":
        identity = revision_identity(rev, cache_dir=cache_dir)
        requires = _requires_python_of_tree(Path(rev.ref))
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
            from harness.probes.venvs import prepare_venv

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
