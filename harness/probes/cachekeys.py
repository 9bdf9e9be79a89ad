"""Cache of probe results: one checksummed JSON entry per (revision, project version, environment, test, device).

=================  ==================================================================================
revision           :attr:`PreparedRevision.identity`: the archive's sha256, the git commit, or a digest
                   of a ``path:`` / ``installed`` tree (edit a file there and it is probed again)
project version    ``tool_version`` + a digest of every source file under ``bridge/`` and
                   ``harness/probes/`` (a change to the bridge or a probe re-runs everything)
environment        Python ``X.Y``, torch, transformers and the preparation method (a result on
                   another stack is another result)
test, device       the probe test's name and ``cpu`` / ``cuda``
=================  ==================================================================================

Entries live under ``<cache>/probes/`` through :class:`harness.cache.JsonCache`, which detects a
corrupt entry (bad header, checksum, JSON), deletes it and reports a miss, so it is recomputed.
Timeouts and errors are cached like any result, so a resumed sweep does not wait on a known hang
again; ``refresh`` bypasses the lookup.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cache import JsonCache, default_cache_dir, stable_hash
from harness.errors import ProbeError
from harness.matrix import tool_version
from harness.probes.prepared import PreparedRevision
from harness.probes.runner import ProbeResult
from harness.versions import project_root

__all__ = ["KEY_VERSION", "ProbeCache", "environment_id", "key_for", "probe_key", "project_version", "source_digest"]

KEY_VERSION = 1
"""Bump when the key's ingredients change meaning."""

_SOURCE_DIRS = ("bridge", "harness/probes")
_PROJECT_ENV = "MCORE_COMPAT_PROJECT_VERSION"


def source_digest(root: Path | None = None, dirs: tuple[str, ...] = _SOURCE_DIRS) -> str:
    """SHA-256 over the relative paths and bytes of the source files under ``dirs``."""
    root = root or project_root()
    digest = hashlib.sha256()
    for rel in dirs:
        for path in sorted((root / rel).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
                continue
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def project_version() -> str:
    """``<tool_version>+<sha12 of bridge/ and harness/probes/>`` (computed once per process).

    The value is exported as ``$MCORE_COMPAT_PROJECT_VERSION`` and taken from there when set, so a probe
    subprocess that caches work of its own (the ``ckpt_compat`` writers, :mod:`harness.probes.ckpt_store`)
    keys it with the digest its sweep started with: an edit under ``bridge/`` during an hour-long sweep
    would otherwise make every later reader write every checkpoint again."""
    value = os.environ.get(_PROJECT_ENV) or f"{tool_version()}+{source_digest()[:12]}"
    os.environ[_PROJECT_ENV] = value
    return value


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


@functools.lru_cache(maxsize=4)
def _base_environment() -> str:
    py = ".".join(platform.python_version_tuple()[:2])
    return f"py{py}-torch{_dist_version('torch')}-transformers{_dist_version('transformers')}"


def environment_id(method: str = "pythonpath", python_version: str | None = None) -> str:
    """The stack a probe runs on, as far as it is known without starting the child."""
    if method == "pythonpath":
        return f"{_base_environment()}-{method}"
    py = ".".join((python_version or platform.python_version()).split(".")[:2])
    return f"py{py}-{method}"


def probe_key(identity: str, test: str, device: str, *, environment: str) -> str:
    """The cache key of one probe (see the module docstring)."""
    if not identity:
        raise ProbeError(f"probe {test}: expected a revision identity for the cache key, found none")
    return stable_hash({"v": KEY_VERSION, "revision": identity, "project": project_version(),
                        "environment": environment, "test": test, "device": device})


def key_for(prepared: PreparedRevision, test: str, device: str) -> str:
    """:func:`probe_key` of a prepared revision."""
    return probe_key(prepared.identity, test, device,
                     environment=environment_id(prepared.method, prepared.python_version))


@dataclass
class ProbeCache:
    """Probe results under ``<cache>/probes/`` (hits, misses and corrupt entries in ``store.stats``)."""

    root: Path = field(default_factory=default_cache_dir)
    store: JsonCache = field(init=False)

    def __post_init__(self) -> None:
        self.store = JsonCache(self.root, namespace="probes")

    def get(self, key: str) -> ProbeResult | None:
        data: Any = self.store.get(key)
        if data is None:
            return None
        try:
            return ProbeResult.from_json(data, cached=True)
        except (TypeError, ProbeError):  # a valid entry of another shape: treat as absent
            self.store.stats.corrupt += 1
            return None

    def put(self, key: str, result: ProbeResult) -> None:
        self.store.put(key, result.to_json())
