"""Read a revision's files without installing or checking out anything.

A :class:`Source` answers ``read`` / ``exists`` / ``blob_id`` / ``list_files`` for paths
relative to the root that holds ``megatron/`` (repository root, archive root, or a
site-packages-like directory). ``blob_id`` is git's blob id for every kind of source, so a
file read from a wheel and the same file read from git share one cache entry.
"""

from __future__ import annotations

import ast
import logging
import tarfile
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from harness.cache import git_blob_id
from harness.errors import SourceError

if TYPE_CHECKING:
    import git

__all__ = ["ArchiveSource", "DirSource", "GitSource", "Source", "package_version"]

log = logging.getLogger("harness.sources")

_ROOT_PREFIX = "megatron/"


class Source(ABC):
    """Files of one revision, addressed by POSIX paths relative to the source root."""

    label: str = "source"

    @abstractmethod
    def read(self, relpath: str) -> bytes | None:
        """The file's bytes, or None when it does not exist at this revision."""

    @abstractmethod
    def list_files(self, prefix: str) -> list[str]:
        """Every file path under directory ``prefix`` (sorted)."""

    def exists(self, relpath: str) -> bool:
        """True for an existing file or a directory holding at least one file."""
        relpath = relpath.rstrip("/")
        return self.read(relpath) is not None or bool(self.list_files(relpath))

    def blob_id(self, relpath: str) -> str | None:
        """git's blob id of the file (None when absent)."""
        data = self.read(relpath)
        return None if data is None else git_blob_id(data)

    def tree_id(self, prefix: str) -> str | None:
        """A content id of a whole directory when the source has one cheaply (git), else None."""
        return None

    def close(self) -> None:
        """Release open handles (archives)."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArchiveSource(Source):
    """A wheel (zip) or sdist (tar.gz / zip) read in place; an sdist's top folder is stripped."""

    def __init__(self, archive: Path, label: str | None = None) -> None:
        self.archive = archive
        self.label = label or archive.name
        self._members: dict[str, str] = {}
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        try:
            if zipfile.is_zipfile(archive):
                self._zip = zipfile.ZipFile(archive)
                names = [n for n in self._zip.namelist() if not n.endswith("/")]
            else:
                self._tar = tarfile.open(archive)
                names = [m.name for m in self._tar.getmembers() if m.isfile()]
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise SourceError(
                f"cannot open archive {archive}: {exc}; delete it from the cache to download it again"
            ) from exc
        strip = not any(n.startswith(_ROOT_PREFIX) for n in names)
        for name in names:
            rel = name.split("/", 1)[1] if strip and "/" in name else name
            self._members.setdefault(rel, name)

    def read(self, relpath: str) -> bytes | None:
        member = self._members.get(relpath)
        if member is None:
            return None
        if self._zip is not None:
            return self._zip.read(member)
        assert self._tar is not None
        handle = self._tar.extractfile(member)
        return None if handle is None else handle.read()

    def list_files(self, prefix: str) -> list[str]:
        prefix = prefix.rstrip("/") + "/"
        return sorted(p for p in self._members if p.startswith(prefix))

    def newest_timestamp(self) -> int | None:
        """Newest member time in the archive (seconds since the epoch), if recorded."""
        import calendar

        if self._zip is not None:
            stamps = [calendar.timegm((*i.date_time, 0, 0, 0)) for i in self._zip.infolist()]
        else:
            assert self._tar is not None
            stamps = [int(m.mtime) for m in self._tar.getmembers()]
        return max(stamps) if stamps else None

    def extract_to(self, dest: Path, prefix: str = _ROOT_PREFIX) -> None:
        """Write every file under ``prefix`` below ``dest`` (used to build full trees)."""
        for rel in self.list_files(prefix):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = self.read(rel)
            assert data is not None
            target.write_bytes(data)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._tar is not None:
            self._tar.close()


class DirSource(Source):
    """A directory on disk (an unpacked tree, a checkout, or site-packages)."""

    def __init__(self, root: Path, label: str | None = None) -> None:
        self.root = root
        self.label = label or str(root)

    def read(self, relpath: str) -> bytes | None:
        path = self.root / relpath
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError:
            return None

    def list_files(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        out = [
            str(PurePosixPath(p.relative_to(self.root).as_posix()))
            for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
        return sorted(out)


class GitSource(Source):
    """One commit of a git repository, read through the object database (no checkout)."""

    def __init__(self, repo: git.Repo, commit: str, label: str | None = None,
                 known_blobs: dict[str, str | None] | None = None) -> None:
        """``known_blobs``: blob ids of some paths at this commit, already known (None: absent),
        so that walking a long history need not read trees (see :mod:`harness.history`)."""
        self.repo = repo
        self.commit = repo.commit(commit)
        self.label = label or commit[:12]
        self.known_blobs = known_blobs or {}

    def _entry(self, relpath: str) -> object | None:
        try:
            return self.commit.tree / relpath.rstrip("/")
        except KeyError:
            return None

    def read(self, relpath: str) -> bytes | None:
        if relpath in self.known_blobs:
            sha = self.known_blobs[relpath]
            return None if sha is None else self.repo.odb.stream(bytes.fromhex(sha)).read()
        entry = self._entry(relpath)
        if entry is None or getattr(entry, "type", None) != "blob":
            return None
        return entry.data_stream.read()  # type: ignore[attr-defined]

    def exists(self, relpath: str) -> bool:
        if self.known_blobs.get(relpath):
            return True
        return self._entry(relpath) is not None

    def blob_id(self, relpath: str) -> str | None:
        if relpath in self.known_blobs:
            return self.known_blobs[relpath]
        entry = self._entry(relpath)
        if entry is None or getattr(entry, "type", None) != "blob":
            return None
        return entry.hexsha  # type: ignore[attr-defined]

    def tree_id(self, prefix: str) -> str | None:
        entry = self._entry(prefix)
        return entry.hexsha if getattr(entry, "type", None) == "tree" else None  # type: ignore[attr-defined]

    def list_files(self, prefix: str) -> list[str]:
        entry = self._entry(prefix)
        if entry is None or getattr(entry, "type", None) != "tree":
            return []
        return sorted(item.path for item in entry.traverse() if item.type == "blob")  # type: ignore[attr-defined]


def package_version(source: Source) -> str | None:
    """``X.Y.Z[pre]`` from ``megatron/core/package_info.py`` (parsed, never executed)."""
    data = source.read("megatron/core/package_info.py")
    if data is None:
        return None
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return None
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
                values[target.id] = node.value.value
    try:
        base = f"{int(values['MAJOR'])}.{int(values['MINOR'])}.{int(values['PATCH'])}"  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        return None
    pre = values.get("PRE_RELEASE")
    return base + (pre if isinstance(pre, str) else "")
