"""Build local git repositories for tests and benchmarks (nothing here needs the network
except fetching release archives, which are cached).

:func:`build_release_repo` makes a repository whose commits are real megatron-core releases
unpacked from their PyPI archives (only ``megatron/**``), one commit per release in version
order, tagged ``core_vX.Y.Z``, dated from the upstream tag table. :func:`write_history`
appends arbitrary commits (synthetic repositories, benchmark histories). Both stream into
``git fast-import``, so no working tree is written.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.cache import default_cache_dir, file_lock
from harness.errors import HarnessError
from harness.pypi import fetch_releases
from harness.sources import ArchiveSource
from harness.versions import tag_for_version, version_key

__all__ = ["SyntheticCommit", "build_release_repo", "release_commits", "write_history"]

log = logging.getLogger("harness.release_repo")

_IDENT = "mcore-compat <harness@mcore-compat.invalid>"
_MARKER = ".mcore-compat-releases"


@dataclass(frozen=True)
class SyntheticCommit:
    """One commit for :func:`write_history`.

    ``files`` maps paths to new contents (None deletes); with ``replace_all`` the commit's
    tree is exactly ``files`` (its None values ignored).
    """

    message: str
    files: dict[str, bytes | str | None] = field(default_factory=dict)
    tag: str | None = None
    timestamp: int = 1_700_000_000
    replace_all: bool = False


def _git(args: Sequence[str], cwd: Path, data: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True)
    if proc.returncode != 0:
        raise HarnessError(f"git {' '.join(args[:2])} failed in {cwd}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def write_history(repo: Path, commits: Iterable[SyntheticCommit], *, branch: str = "main") -> Path:
    """Append ``commits`` to ``branch`` of ``repo`` (created if needed) through fast-import."""
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists() and not (repo / "HEAD").exists():
        _git(["init", "-q", "-b", branch], repo)
    has_branch = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                                cwd=repo, capture_output=True).returncode == 0
    chunks: list[bytes] = []
    first = True
    for mark, c in enumerate(commits, start=1):
        msg = c.message.encode()
        chunks.append(f"commit refs/heads/{branch}\nmark :{mark}\n".encode())
        chunks.append(f"author {_IDENT} {c.timestamp} +0000\ncommitter {_IDENT} {c.timestamp} +0000\n".encode())
        chunks.append(b"data %d\n%s\n" % (len(msg), msg))
        if first and has_branch:
            chunks.append(f"from refs/heads/{branch}^0\n".encode())
        first = False
        if c.replace_all:
            chunks.append(b"deleteall\n")
        for path, content in sorted(c.files.items()):
            if content is None:
                if not c.replace_all:
                    chunks.append(f"D {path}\n".encode())
                continue
            data = content.encode() if isinstance(content, str) else content
            chunks.append(f"M 100644 inline {path}\n".encode())
            chunks.append(b"data %d\n%s\n" % (len(data), data))
        if c.tag:
            chunks.append(f"reset refs/tags/{c.tag}\nfrom :{mark}\n".encode())
    if chunks:
        _git(["fast-import", "--quiet", "--force", "--depth=1"], repo, b"".join(chunks) + b"done\n")
        _git(["symbolic-ref", "HEAD", f"refs/heads/{branch}"], repo)
    return repo


def _release_timestamp(version: str, source: ArchiveSource) -> int:
    tag = tag_for_version(version)
    if tag is not None:
        day = _dt.datetime.strptime(tag.date, "%Y-%m-%d").replace(hour=12, tzinfo=_dt.timezone.utc)
        return int(day.timestamp())
    return source.newest_timestamp() or 1_600_000_000


_COMPILED = (".so", ".pyd", ".dylib", ".dll")


def release_commits(versions: Iterable[str], cache_dir: Path, *,
                    include_compiled: bool = False) -> list[SyntheticCommit]:
    """One commit per release (version order): the archive's ``megatron/**`` files, tagged.

    Compiled extension modules (``*.so``; 5 MB each, and never in the upstream git
    repository) are left out unless ``include_compiled``.
    """
    ordered = sorted(set(versions), key=version_key)
    fetched = fetch_releases(ordered, cache_dir)
    commits = []
    for version in ordered:
        archive = fetched[version]
        if isinstance(archive, Exception):
            raise archive
        with ArchiveSource(archive) as source:
            files: dict[str, bytes | str | None] = {
                p: source.read(p) for p in source.list_files("megatron")
                if include_compiled or not p.endswith(_COMPILED)
            }
            commits.append(SyntheticCommit(
                message=f"megatron-core {version} (from {archive.name})", files=files,
                tag=f"core_v{version}", timestamp=_release_timestamp(version, source), replace_all=True,
            ))
    return commits


def build_release_repo(versions: Sequence[str], dest: Path | None = None, *,
                       cache_dir: Path | None = None) -> Path:
    """A repository of the given releases (built once; reused when ``dest`` already has them).

    ``dest`` defaults to ``<cache>/release-repos/<hash of the versions>``.
    """
    cache_dir = cache_dir or default_cache_dir()
    ordered = sorted(set(versions), key=version_key)
    if dest is None:
        digest = hashlib.sha256(",".join(ordered).encode()).hexdigest()[:12]
        dest = cache_dir / "release-repos" / digest
    want = "\n".join(ordered)
    with file_lock(dest.parent / f".{dest.name}.lock"):
        marker = dest / ".git" / _MARKER
        if marker.exists() and marker.read_text() == want:
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}-") as tmp:
            work = Path(tmp) / "repo"
            write_history(work, release_commits(ordered, cache_dir))
            (work / ".git" / _MARKER).write_text(want)
            work.rename(dest)
    log.info("built release repository %s (%d releases)", dest, len(ordered))
    return dest
