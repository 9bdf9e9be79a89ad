"""mcore-compat harness: proves the bridge against every MCore revision (see docs/architecture.md)."""

from __future__ import annotations

from harness.errors import CacheError, HarnessError, ProbeError, RevisionError, SourceError
from harness.introspect import Introspection, Introspector
from harness.revisions import Revision, open_source, parse_revision, resolve_revision, worktree_for
from harness.versions import DYNAMIC_RELEASES, RELEASES, default_revisions

__all__ = [
    "DYNAMIC_RELEASES",
    "RELEASES",
    "CacheError",
    "HarnessError",
    "Introspection",
    "Introspector",
    "ProbeError",
    "Revision",
    "RevisionError",
    "SourceError",
    "default_revisions",
    "open_source",
    "parse_revision",
    "resolve_revision",
    "worktree_for",
]
