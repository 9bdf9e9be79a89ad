"""Scan many revisions: resolve every spec first (usage errors stop early), fetch the PyPI
archives in parallel threads, then introspect each one; a revision that cannot be fetched
or parsed becomes an ``error`` result and the scan goes on."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from harness.cache import default_cache_dir
from harness.introspect import Introspection, Introspector
from harness.pypi import fetch_releases
from harness.renames import Rename, detect_renames
from harness.revisions import Revision, resolve_revision
from harness.versions import version_key

__all__ = ["release_snapshots", "resolve_all", "scan_revisions", "scan_renames"]

log = logging.getLogger("harness.scanning")


def resolve_all(specs: Sequence[str | Revision], *, repo: str | None = None,
                cache_dir: Path | None = None) -> list[Revision]:
    """Resolve every spec (raises RevisionError on the first bad one, before any work)."""
    return [resolve_revision(s, repo=repo, cache_dir=cache_dir) for s in specs]


def scan_revisions(
    specs: Sequence[str | Revision],
    *,
    repo: str | None = None,
    introspector: Introspector | None = None,
    jobs: int = 4,
    progress: bool = True,
) -> list[Introspection]:
    """Introspect each revision, in the given order."""
    intro = introspector or Introspector()
    cache_dir = intro.cache_dir or default_cache_dir()
    revisions = resolve_all(specs, repo=repo, cache_dir=cache_dir)
    pypi = [r.ref for r in revisions if r.kind == "pypi"]
    bar = tqdm(total=len(revisions) + len(pypi), file=sys.stderr, disable=not progress,
               desc="mcore-compat", unit="step", leave=False)
    with bar:
        if pypi:
            bar.set_postfix_str("fetching archives")
            fetch_releases(pypi, cache_dir, jobs=jobs, on_done=lambda *_: bar.update(1))
        results = []
        for rev in revisions:
            bar.set_postfix_str(rev.spec)
            results.append(intro.introspect(rev))
            bar.update(1)
    for r in results:
        if r.error:
            log.warning("%s: %s", r.revision.spec, r.error)
    return results


def release_snapshots(intros: Sequence[Introspection]) -> list[tuple[str, dict]]:
    """``(version, TransformerConfig fields)`` of the readable released versions, oldest first
    (one per version; releases without ``TransformerConfig`` yet are kept, with no fields)."""
    by_version: dict[str, dict] = {}
    for r in intros:
        v = r.revision.version
        if r.error or not v or not all(p.isdigit() for p in v.split(".")):
            continue
        if v not in by_version or r.revision.kind == "pypi":
            by_version[v] = r.transformer_config
    return [(v, by_version[v]) for v in sorted(by_version, key=version_key)]


def scan_renames(intros: Sequence[Introspection]) -> list[Rename]:
    """Renames detected across the releases among ``intros``."""
    return detect_renames([s for s in release_snapshots(intros) if s[1]])
