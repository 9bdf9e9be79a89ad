"""The one exception root of :mod:`harness`."""

from __future__ import annotations

__all__ = [
    "HarnessError",
    "RevisionError",
    "SourceError",
    "ReleaseNotFoundError",
    "IndexUnreachableError",
    "ProbeError",
    "CacheError",
]


class HarnessError(Exception):
    """Root of every error raised on purpose by :mod:`harness`."""


class RevisionError(HarnessError, ValueError):
    """A revision spec is malformed, unknown, or unreachable."""


class SourceError(HarnessError):
    """A revision's sources are missing or cannot be parsed."""


class ReleaseNotFoundError(SourceError):
    """The package index answered, and it has no release of that version."""


class IndexUnreachableError(SourceError):
    """pip found no release at all: the package index could not be reached (or lists no megatron-core)."""


class ProbeError(HarnessError):
    """A dynamic probe could not run (as opposed to running and failing)."""


class CacheError(HarnessError):
    """A cache entry is corrupt or unreadable (it is recomputed)."""
