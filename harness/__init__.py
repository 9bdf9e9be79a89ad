"""mcore-compat harness: proves the bridge against every MCore revision (see docs/architecture.md).

Names are imported lazily: ``mcore-compat convert`` / ``export`` import this package (``harness.cli``) and must
not pay for the scanners and introspection they never use.
"""

from __future__ import annotations

from bridge.lazy import lazy_exports
from harness.errors import CacheError, HarnessError, ProbeError, RevisionError, SourceError

_EXPORTS: dict[str, str] = {
    "DYNAMIC_RELEASES": "harness.versions",
    "RELEASES": "harness.versions",
    "Introspection": "harness.introspect",
    "Introspector": "harness.introspect",
    "Revision": "harness.revisions",
    "default_revisions": "harness.versions",
    "open_source": "harness.revisions",
    "parse_revision": "harness.revisions",
    "resolve_revision": "harness.revisions",
    "worktree_for": "harness.revisions",
}

__all__ = sorted([*_EXPORTS, "CacheError", "HarnessError", "ProbeError", "RevisionError", "SourceError"])

__getattr__, __dir__ = lazy_exports("harness", _EXPORTS, __all__)
