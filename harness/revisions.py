"""Revision specs, one notation everywhere (CLI, nox, Python, reports).

==================  ====================================================================
``pypi:0.16.1``     a released megatron-core, read from its wheel/sdist (cached)
``git:<ref>``       a tag, branch or SHA of the submodule repository, or of ``--repo``
``path:DIR``        an unpacked tree: DIR holds ``megatron/core`` (repo root, site-packages)
``installed``       the megatron-core importable here (located, never imported)
==================  ====================================================================
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from harness import gitrepo
from harness.cache import default_cache_dir, file_lock
from harness.errors import RevisionError, SourceError
from harness.pypi import fetch_release
from harness.sources import ArchiveSource, DirSource, GitSource, Source, package_version
from harness.versions import (
    RELEASES,
    tag_for_version,
    version_for_commit,
    version_for_tag,
    version_key,
)

__all__ = [
    "KINDS",
    "Revision",
    "open_source",
    "parse_revision",
    "resolve_revision",
    "worktree_for",
]

log = logging.getLogger("harness.revisions")

KINDS = ("pypi", "git", "path", "installed")


@dataclass(frozen=True)
class Revision:
    """A parsed revision spec.

    Attributes:
        spec: the canonical spec (``pypi:0.16.1``, ``git:core_v0.13.0``, ``path:/x``, ``installed``).
        kind: one of :data:`KINDS`.
        ref: the part after the colon (version, git ref, directory; ``installed`` for installed).
        version: the megatron-core version when known.
        commit: the upstream commit SHA when known (git: resolved; pypi: from the tag table).
        repo: for ``git:``, the ``--repo`` path/URL (None = the submodule ``3rdparty/Megatron-LM``).
    """

    spec: str
    kind: str
    ref: str
    version: str | None = None
    commit: str | None = None
    repo: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"spec": self.spec, "version": self.version, "commit": self.commit}


def _closest_versions(version: str, n: int = 5) -> list[str]:
    """Releases nearest to ``version``: same leading components first, then numerically nearest."""
    want = version_key(version)
    if all(part < 0 for part in want):
        return difflib.get_close_matches(version, RELEASES, n=n, cutoff=0.3)

    def distance(candidate: str) -> tuple[int, int, tuple[int, ...]]:
        have = version_key(candidate)
        shared = 0
        while shared < min(len(have), len(want)) and have[shared] == want[shared]:
            shared += 1
        if shared >= min(len(have), len(want)):
            return (-shared, 0, ())
        gap = abs(have[shared] - want[shared])
        # among equally distant releases, the ones nearest the asked version first
        return (-shared, gap, tuple(-x for x in have) if want > have else have)

    return sorted(RELEASES, key=distance)[:n]


def parse_revision(spec: str | Revision, *, repo: str | None = None) -> Revision:
    """Parse ``spec`` without touching the network or any repository.

    Raises:
        RevisionError: malformed spec, or a ``pypi:`` version that is not a release.
    """
    if isinstance(spec, Revision):
        return spec
    spec = spec.strip()
    if spec == "installed":
        return Revision(spec="installed", kind="installed", ref="installed")
    kind, sep, ref = spec.partition(":")
    if not sep or kind not in KINDS or not ref:
        raise RevisionError(
            f"malformed revision {spec!r}: expected pypi:X.Y.Z, git:<tag|branch|sha>, path:DIR "
            f"or installed"
        )
    if kind == "pypi":
        ref = ref.removeprefix("core_v").removeprefix("v")
        if ref not in RELEASES:
            close = _closest_versions(ref)
            raise RevisionError(
                f"unknown megatron-core release {ref!r}: expected one of harness.versions.RELEASES; "
                f"closest: {', '.join(close) if close else 'none'} (a new release must be added there)"
            )
        tag = tag_for_version(ref)
        return Revision(spec=f"pypi:{ref}", kind="pypi", ref=ref, version=ref,
                        commit=tag.commit if tag else None)
    if kind == "git":
        return Revision(spec=spec, kind="git", ref=ref, version=version_for_tag(ref), repo=repo)
    return Revision(spec=spec, kind="path", ref=ref)


def _installed_root() -> tuple[Path, str | None]:
    try:
        spec = importlib.util.find_spec("megatron.core")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise RevisionError(
            "revision 'installed': megatron-core is not importable in this environment; "
            "install it (pip install megatron-core) or use pypi:X.Y.Z / path:DIR"
        )
    core = Path(next(iter(spec.submodule_search_locations)))
    try:
        version: str | None = importlib.metadata.version("megatron-core")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return core.parent.parent, version


def _dir_root(ref: str) -> Path:
    path = Path(ref).expanduser().resolve()
    if (path / "megatron" / "core").is_dir():
        return path
    if path.name == "core" and path.parent.name == "megatron" and path.is_dir():
        return path.parent.parent
    raise RevisionError(
        f"path:{ref}: expected a directory holding megatron/core (a repository root or a "
        f"site-packages-like directory), found {'no such directory' if not path.is_dir() else 'none'}"
    )


def resolve_revision(spec: str | Revision, *, repo: str | None = None,
                     cache_dir: Path | None = None) -> Revision:
    """Parse ``spec`` and fill in what can be known cheaply: commit SHA and version.

    Raises:
        RevisionError: unknown revision (with the closest tags/versions), unreachable
            repository, or a path without ``megatron/core``.
    """
    rev = parse_revision(spec, repo=repo)
    if rev.kind == "git" and rev.repo is None and repo is not None:
        rev = replace(rev, repo=repo)
    if rev.kind == "git":
        handle = gitrepo.open_repo(rev.repo, cache_dir or default_cache_dir())
        sha = gitrepo.resolve_ref(handle, rev.ref)
        version = rev.version or version_for_commit(sha)
        if version is None:
            version = package_version(GitSource(handle, sha))
        return replace(rev, commit=sha, version=version)
    if rev.kind == "path":
        root = _dir_root(rev.ref)
        return replace(rev, spec=f"path:{root}", ref=str(root), version=package_version(DirSource(root)))
    if rev.kind == "installed":
        root, version = _installed_root()
        return replace(rev, version=version or package_version(DirSource(root)))
    return rev


def open_source(rev: Revision, *, cache_dir: Path | None = None) -> Source:
    """A reader of ``rev``'s files (downloads a PyPI archive on first use).

    Raises:
        RevisionError: the revision cannot be resolved.
        SourceError: its files cannot be fetched.
    """
    cache_dir = cache_dir or default_cache_dir()
    if rev.kind == "pypi":
        return ArchiveSource(fetch_release(rev.ref, cache_dir), label=rev.spec)
    if rev.kind == "git":
        handle = gitrepo.open_repo(rev.repo, cache_dir)
        sha = rev.commit or gitrepo.resolve_ref(handle, rev.ref)
        return GitSource(handle, sha, label=rev.spec)
    if rev.kind == "path":
        return DirSource(_dir_root(rev.ref), label=rev.spec)
    if rev.kind == "installed":
        return DirSource(_installed_root()[0], label=rev.spec)
    raise SourceError(f"revision kind {rev.kind!r} has no source reader")


def worktree_for(rev: Revision | str, *, repo: str | None = None,
                 cache_dir: Path | None = None) -> Path:
    """A directory holding the revision's full tree (``megatron/`` at its top).

    git: a cached ``git worktree add --detach`` per commit SHA; pypi: the archive unpacked
    once under the cache; path/installed: the directory itself.
    """
    cache_dir = cache_dir or default_cache_dir()
    rev = resolve_revision(rev, repo=repo, cache_dir=cache_dir)
    if rev.kind == "git":
        handle = gitrepo.open_repo(rev.repo, cache_dir)
        assert rev.commit is not None
        return gitrepo.worktree(handle, rev.commit, cache_dir, gitrepo.repo_key(rev.repo))
    if rev.kind == "pypi":
        dest = cache_dir / "trees" / f"pypi-{rev.ref}"
        with file_lock(cache_dir / "locks" / f"tree-pypi-{rev.ref}.lock"):
            if not (dest / ".complete").exists():
                shutil.rmtree(dest, ignore_errors=True)
                source = open_source(rev, cache_dir=cache_dir)
                assert isinstance(source, ArchiveSource)
                with source:
                    source.extract_to(dest)
                (dest / ".complete").write_text(rev.spec)
        return dest
    if rev.kind == "path":
        return Path(rev.ref)
    return _installed_root()[0]
