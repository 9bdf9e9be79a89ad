"""The on-disk cache: one root (``$MCORE_COMPAT_CACHE`` or ``~/.cache/mcore-compat``).

Layout under the root::

    pypi/        downloaded megatron-core archives (wheel or sdist), as pip saved them
    facts/       JSON results keyed by content (git blob ids + introspector version)
    trees/       unpacked archives (full source trees for code that must run)
    worktrees/   ``git worktree add --detach`` per commit
    repos/       clones of remote repositories given with ``--repo URL``

Every JSON entry is a header line ``{"key", "sha256"}`` followed by the payload JSON; a file
whose header, checksum or JSON is wrong is reported (``CacheError`` internally), deleted and
recomputed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.user_cache import atomic_write_text, default_cache_dir  # the one implementation, shared
from harness.errors import CacheError

__all__ = ["ENTRY_FORMAT", "CacheStats", "JsonCache", "default_cache_dir", "file_lock", "git_blob_id", "stable_hash"]

log = logging.getLogger("harness.cache")

ENTRY_FORMAT = 2
"""Version of the entry file layout (a change moves entries to a new folder, not errors)."""


def git_blob_id(data: bytes) -> str:
    """The id git gives ``data`` as a blob, so archive and git sources share cache keys."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def stable_hash(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created), for work shared between processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class CacheStats:
    """Counters a caller (or a test) can read to see what the cache did."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    writes: int = 0


@dataclass
class JsonCache:
    """Content-addressed JSON entries under ``root/<namespace>/``.

    ``get`` returns None on a miss and on a corrupt entry (which it deletes); ``put`` writes
    atomically, so concurrent processes at worst compute the same entry twice.
    """

    root: Path
    namespace: str = "facts"
    stats: CacheStats = field(default_factory=CacheStats)

    def path_for(self, key: str) -> Path:
        return self.root / self.namespace / f"v{ENTRY_FORMAT}" / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        path = self.path_for(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        try:
            return self._check(key, raw)
        except CacheError as exc:
            self.stats.corrupt += 1
            self.stats.misses += 1
            log.warning("%s; recomputing", exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def _check(self, key: str, raw: bytes) -> Any:
        # line 1: {"key", "sha256"} header; the rest: the payload JSON, hashed as bytes
        header_raw, sep, body = raw.partition(b"\n")
        try:
            header = json.loads(header_raw) if sep else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("key") != key:
            raise CacheError(f"cache entry {key} has no valid header")
        if header.get("sha256") != hashlib.sha256(body).hexdigest():
            raise CacheError(f"cache entry {key} does not match its checksum")
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise CacheError(f"cache entry {key} is not valid JSON ({exc})") from exc
        self.stats.hits += 1
        return payload

    def put(self, key: str, payload: Any) -> None:
        body = json.dumps(payload, separators=(",", ":"))
        header = json.dumps({"key": key, "sha256": hashlib.sha256(body.encode()).hexdigest()})
        try:
            atomic_write_text(self.path_for(key), header + "\n" + body)
            self.stats.writes += 1
        except OSError as exc:  # a read-only cache must not stop a scan
            log.warning("could not write cache entry %s: %s", key, exc)
