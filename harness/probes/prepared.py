"""What a prepared revision is, and what identifies a revision's content (shared by every preparation method).

:class:`PreparedRevision` is what :func:`harness.probes.envs.prepare_revision` returns, whichever
method built it (``pythonpath``: :mod:`harness.probes.envs`; ``venv``: :mod:`harness.probes.venvs`).
Both methods take a release's archive from :func:`release_archive` (a carried wheel from
``$MCORE_COMPAT_WHEELS`` first, then the cache and the index), identify it with
:func:`revision_identity`, read its declared Python range (:func:`requires_python_of`,
:func:`python_range_notes`) and add what :data:`EXTRA_REQUIREMENTS` says some releases need.
"""

from __future__ import annotations

import email.parser
import functools
import hashlib
import importlib.util
import os
import platform
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from harness.cache import default_cache_dir
from harness.errors import ProbeError
from harness.pypi import fetch_release
from harness.revisions import Revision, worktree_for
from harness.versions import version_key

__all__ = [
    "EXTRA_REQUIREMENTS",
    "WHEELS_ENV",
    "ExtraRequirement",
    "PreparedRevision",
    "python_range_notes",
    "release_archive",
    "requires_python_of",
    "requires_python_of_tree",
    "revision_identity",
    "sha256_file",
]

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

def sha256_file(path: Path) -> str:
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
        digest.update(sha256_file(path).encode())
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
        return "sha256:" + sha256_file(release_archive(rev.ref, cache_dir))
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


def requires_python_of_tree(root: Path) -> str | None:
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
