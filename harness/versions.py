"""The one list of MCore revisions: nox, the CLI and the matrix all read this module.

``RELEASES`` is every released ``megatron-core`` version (in version order); the tag table
(``harness/data/mcore_release_tags.tsv``) maps a release to its upstream ``core_vX.Y.Z``
commit where it is known.
"""

from __future__ import annotations

import csv
import functools
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DYNAMIC_RELEASES",
    "RELEASES",
    "SUBMODULE_PATH",
    "ReleaseTag",
    "default_revisions",
    "pinned_submodule_sha",
    "project_root",
    "release_tags",
    "submodule_repo_path",
    "tag_for_version",
    "version_for_commit",
    "version_for_tag",
    "version_key",
]

log = logging.getLogger("harness.versions")

RELEASES: tuple[str, ...] = (
    "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "0.9.0", "0.10.0",
    "0.11.0", "0.12.0", "0.12.1", "0.12.2", "0.12.3", "0.13.0", "0.13.1", "0.14.0", "0.15.0",
    "0.15.1", "0.15.2", "0.15.3", "0.16.0", "0.16.1", "0.17.0", "0.17.1", "0.18.0", "0.18.1",
    "0.18.2", "0.19.0", "0.19.1", "0.19.2",
)  # fmt: skip
"""Every released megatron-core version, oldest first."""

SUBMODULE_PATH = "3rdparty/Megatron-LM"
"""The pinned upstream repository, relative to the project root (a git submodule)."""


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of a plain ``X.Y.Z`` version (non-numeric parts sort first)."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else -1)
    return tuple(parts)


DYNAMIC_RELEASES: tuple[str, ...] = tuple(v for v in RELEASES if version_key(v) >= (0, 8, 0))
"""Releases the dynamic probes run against (0.8.0 onward: the bridge's supported range)."""


@dataclass(frozen=True)
class ReleaseTag:
    """One row of the upstream tag table."""

    tag: str
    commit: str
    date: str

    @property
    def version(self) -> str:
        return self.tag.removeprefix("core_v")


@functools.lru_cache(maxsize=1)
def release_tags() -> tuple[ReleaseTag, ...]:
    """The upstream tag table (package data), in file order."""
    text = (Path(__file__).resolve().parent / "data" / "mcore_release_tags.tsv").read_text("utf-8")
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return tuple(ReleaseTag(r["tag"], r["commit"], r["date"]) for r in rows)


def tag_for_version(version: str) -> ReleaseTag | None:
    """The upstream tag of a release, or None when the table does not know it."""
    return next((t for t in release_tags() if t.version == version), None)


def version_for_tag(tag: str) -> str | None:
    """``core_v0.13.0`` -> ``0.13.0`` (None for a tag that is not a release tag)."""
    if tag.startswith("core_v") and tag.removeprefix("core_v") in RELEASES:
        return tag.removeprefix("core_v")
    return None


def version_for_commit(sha: str) -> str | None:
    """The release whose upstream tag points at ``sha`` (full or abbreviated), if any."""
    sha = sha.lower()
    if len(sha) < 7:
        return None
    return next((t.version for t in release_tags() if t.commit.startswith(sha)), None)


def project_root() -> Path:
    """The checkout this package lives in (``harness/..``)."""
    return Path(__file__).resolve().parent.parent


def submodule_repo_path() -> Path:
    """Where the pinned upstream repository lives when the submodule is initialised."""
    return project_root() / SUBMODULE_PATH


@functools.lru_cache(maxsize=1)
def pinned_submodule_sha() -> str | None:
    """The commit the project pins ``3rdparty/Megatron-LM`` to (``git ls-tree HEAD``), if any."""
    try:
        out = subprocess.run(
            ["git", "ls-tree", "HEAD", SUBMODULE_PATH],
            cwd=project_root(), capture_output=True, text=True, check=True, timeout=30,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("no pinned submodule: %s", exc)
        return None
    # "<mode> commit <sha>\t<path>"
    if len(out) >= 3 and out[1] == "commit":
        return out[2]
    return None


def _submodule_initialised() -> bool:
    path = submodule_repo_path()
    return (path / ".git").exists() and any(path.iterdir())


def default_revisions() -> list[str]:
    """All releases as ``pypi:`` specs, plus ``git:<pinned sha>`` when the submodule is initialised."""
    specs = [f"pypi:{v}" for v in RELEASES]
    sha = pinned_submodule_sha()
    if sha and _submodule_initialised():
        specs.append(f"git:{sha}")
    return specs
