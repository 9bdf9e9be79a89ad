"""Field history of a git repository: ``history`` (what changed, commit by commit) and
``bisect`` (where a field appears and disappears).

Only commits that touch the config files are read (``git log --first-parent -- paths``),
and each file is parsed once per blob thanks to the facts cache, so walking thousands of
commits costs little more than listing them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import git

from harness.introspect import TC_PATH, Introspector
from harness.sources import GitSource
from harness.versions import version_for_tag, version_key

__all__ = ["CONFIG_PATHS", "BisectResult", "CommitFields", "HistoryEntry", "bisect_field",
           "config_commits", "field_history", "first_release_containing"]

log = logging.getLogger("harness.history")

CONFIG_PATHS = (TC_PATH, "megatron/core/model_parallel_config.py")
"""The files whose changes can change ``TransformerConfig``'s fields."""


@dataclass(frozen=True)
class CommitFields:
    """The fields at one commit (``None`` fields: the class does not exist there)."""

    sha: str
    date: str
    subject: str
    fields: dict[str, dict[str, Any]] | None
    error: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    commit: str
    date: str
    subject: str
    tags: tuple[str, ...]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    default_changed: dict[str, dict[str, str | None]] = field(default_factory=dict)
    type_changed: dict[str, dict[str, str | None]] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "date": self.date, "subject": self.subject, "tags": list(self.tags),
                "added": list(self.added), "removed": list(self.removed),
                "default_changed": self.default_changed, "type_changed": self.type_changed,
                "error": self.error}


def config_commits(repo: git.Repo, *, start: str | None = None, end: str = "HEAD") -> list[str]:
    """SHAs of first-parent commits touching :data:`CONFIG_PATHS`, oldest first."""
    rng = f"{start}..{end}" if start else end
    out = repo.git.log("--first-parent", "--reverse", "--format=%H", rng, "--", *CONFIG_PATHS)
    return [line for line in out.splitlines() if line]


def config_blob_ids(repo: git.Repo, *, start: str | None = None,
                    end: str = "HEAD") -> list[tuple[str, dict[str, str | None]]]:
    """For each commit of :func:`config_commits`, the blob ids of :data:`CONFIG_PATHS` there.

    One ``git log --raw`` for the whole range (plus one ``ls-tree`` for the start), instead
    of reading trees commit by commit.
    """
    state: dict[str, str | None] = dict.fromkeys(CONFIG_PATHS)
    if start:
        for line in repo.git.ls_tree("-r", start, "--", *CONFIG_PATHS).splitlines():
            meta, path = line.split("\t", 1)
            state[path] = meta.split()[2]
    rng = f"{start}..{end}" if start else end
    out = repo.git.log("--first-parent", "--reverse", "--root", "--raw", "--no-abbrev", "--no-renames",
                       "--format=%x00%H", rng, "--", *CONFIG_PATHS)
    result: list[tuple[str, dict[str, str | None]]] = []
    for chunk in out.split("\x00")[1:]:
        lines = chunk.strip().splitlines()
        for line in lines[1:]:
            if not line.startswith(":"):
                continue
            meta, path = line.split("\t", 1)
            new_sha, status = meta.split()[3], meta.split()[4]
            state[path] = None if status.startswith("D") else new_sha
        result.append((lines[0].strip(), dict(state)))
    return result


def _tags_by_commit(repo: git.Repo) -> dict[str, list[str]]:
    tags: dict[str, list[str]] = {}
    for tag in repo.tags:
        try:
            tags.setdefault(tag.commit.hexsha, []).append(tag.name)
        except ValueError:  # a tag pointing at a non-commit object
            continue
    return tags


def commit_fields(repo: git.Repo, sha: str, intro: Introspector,
                  known_blobs: dict[str, str | None] | None = None) -> CommitFields:
    commit = repo.commit(sha)
    date = commit.committed_datetime.isoformat()
    subject = commit.summary if isinstance(commit.summary, str) else commit.summary.decode()
    try:
        fields = intro.config_fields(GitSource(repo, sha, known_blobs=known_blobs))
    except Exception as exc:  # noqa: BLE001 - a broken commit is a history entry, not a crash
        return CommitFields(sha, date, subject, None, error=str(exc))
    return CommitFields(sha, date, subject, fields)


def iter_commit_fields(repo: git.Repo, intro: Introspector, *, start: str | None = None,
                       end: str = "HEAD") -> Iterator[CommitFields]:
    for sha, blobs in config_blob_ids(repo, start=start, end=end):
        yield commit_fields(repo, sha, intro, blobs)


def _diff(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> tuple[
        tuple[str, ...], tuple[str, ...], dict[str, dict[str, str | None]], dict[str, dict[str, str | None]]]:
    added = tuple(f for f in after if f not in before)
    removed = tuple(f for f in before if f not in after)
    default = {f: {"from": before[f]["default"] if before[f]["default"] is not None else before[f].get("default_factory"),
                   "to": after[f]["default"] if after[f]["default"] is not None else after[f].get("default_factory")}
               for f in after if f in before and (before[f]["default"], before[f].get("default_factory"))
               != (after[f]["default"], after[f].get("default_factory"))}
    types = {f: {"from": before[f]["type"], "to": after[f]["type"]}
             for f in after if f in before and before[f]["type"] != after[f]["type"]}
    return added, removed, default, types


def field_history(repo: git.Repo, intro: Introspector, *, start: str | None = None,
                  end: str = "HEAD") -> list[HistoryEntry]:
    """One entry per commit (first-parent, oldest first) that changed the fields."""
    tags = _tags_by_commit(repo)
    previous: dict[str, dict[str, Any]] = {}
    if start:
        base = commit_fields(repo, repo.commit(start).hexsha, intro)
        previous = base.fields or {}
    out: list[HistoryEntry] = []
    for cf in iter_commit_fields(repo, intro, start=start, end=end):
        ctags = tuple(sorted(tags.get(cf.sha, [])))
        if cf.error:
            out.append(HistoryEntry(cf.sha, cf.date, cf.subject, ctags, error=cf.error))
            continue
        current = cf.fields or {}
        added, removed, default, types = _diff(previous, current)
        if added or removed or default or types:
            out.append(HistoryEntry(cf.sha, cf.date, cf.subject, ctags, added, removed, default, types))
        previous = current
    return out


def first_release_containing(repo: git.Repo, sha: str) -> str | None:
    """The oldest ``core_vX.Y.Z`` tag whose history contains ``sha``."""
    names = repo.git.tag("--contains", sha, "--list", "core_v*").split()
    versions = [(version_key(v), t) for t in names if (v := version_for_tag(t) or t.removeprefix("core_v"))]
    return min(versions)[1] if versions else None


@dataclass(frozen=True)
class BisectResult:
    """Where ``field`` first exists and where it disappears (None while it still exists).

    ``removals`` and ``returns`` list every disappearance and comeback, oldest first.
    """

    field: str
    first: dict[str, Any] | None
    removed: dict[str, Any] | None
    removals: tuple[dict[str, Any], ...] = ()
    returns: tuple[dict[str, Any], ...] = ()
    commits_read: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "first": self.first, "removed": self.removed,
                "removals": list(self.removals), "returns": list(self.returns),
                "commits_read": self.commits_read}


def bisect_field(repo: git.Repo, name: str, intro: Introspector, *, end: str = "HEAD") -> BisectResult:
    """Walk the config-touching commits once (cached) and find where ``name`` appears/disappears."""
    tags = _tags_by_commit(repo)
    first: dict[str, Any] | None = None
    removals: list[dict[str, Any]] = []
    returns: list[dict[str, Any]] = []
    present = False
    count = 0
    for cf in iter_commit_fields(repo, intro, end=end):
        count += 1
        if cf.error:
            continue
        has = cf.fields is not None and name in cf.fields
        info = {"commit": cf.sha, "date": cf.date, "subject": cf.subject, "tags": sorted(tags.get(cf.sha, []))}
        if has and not present:
            (returns if first is not None else []).append(info)
            first = first or info
        elif present and not has:
            removals.append(info)
        present = has
    for info in (first, *removals, *returns):
        if info is not None:
            info["first_release"] = first_release_containing(repo, info["commit"])
    removed = None if present or not removals else removals[-1]
    return BisectResult(name, first, removed, tuple(removals), tuple(returns), count)
