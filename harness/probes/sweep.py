"""Run probe tests over many revisions: resumable, concurrent, timed.

Every finished probe is cached the moment it ends (:mod:`harness.probes.cachekeys`), so an
interrupted sweep (Ctrl-C, a lost machine) loses only the probes that were running, and a rerun
does only what is left. A revision is prepared (:func:`harness.probes.envs.prepare_revision`) only
when one of its probes is not cached. A revision that cannot be prepared gives ``error`` results
for all its tests (not cached: fetching may work next time); a revision that crashes, hangs or
fails to import gives ``error`` / ``timeout`` results (cached) and the sweep goes on.

Timing: :class:`SweepReport` holds the total wall time and, per revision, the preparation time, the
summed probe time and the wall time from its first probe's start to its last probe's end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness.cache import default_cache_dir
from harness.errors import HarnessError, ProbeError
from harness.probes.cachekeys import ProbeCache, environment_id, probe_key
from harness.probes.envs import prepare_revision
from harness.probes.forkpool import close_servers
from harness.probes.prepared import PreparedRevision, revision_identity
from harness.probes.runner import ProbeResult, kill_active_probes, run_probe, test_name
from harness.probes.skips import not_launched_result
from harness.revisions import Revision, resolve_revision

__all__ = ["RevisionTiming", "SweepReport", "default_tests", "run_sweep", "run_sweep_report"]

log = logging.getLogger("harness.probes.sweep")


@dataclass(frozen=True)
class RevisionTiming:
    """What one revision cost in a sweep (seconds) and how its probes ended."""

    spec: str
    prepare_s: float
    probe_s: float
    wall_s: float
    probes: int
    new: int
    statuses: dict[str, int]
    error: str | None = None


@dataclass(frozen=True)
class SweepReport:
    """The results of a sweep (in revision, then test order) and its timing."""

    results: tuple[ProbeResult, ...]
    revisions: tuple[RevisionTiming, ...]
    total_s: float
    device: str
    jobs: int

    @property
    def new_probes(self) -> int:
        """Probes run by this sweep (the rest came from the cache)."""
        return sum(1 for r in self.results if not r.cached)

    def to_json(self) -> dict[str, Any]:
        return {"total_s": round(self.total_s, 3), "device": self.device, "jobs": self.jobs,
                "new_probes": self.new_probes, "probes": len(self.results),
                "revisions": [asdict(t) for t in self.revisions]}


def default_tests(device: str) -> list[str]:
    """Every catalog test that runs on ``device`` and is run by default (not ``ckpt_compat:*``).

    Raises:
        ProbeError: the catalog (``harness/probes/catalog.py``) is not available.
    """
    try:
        from harness.probes.catalog import TESTS
    except ImportError as exc:
        raise ProbeError(f"no probe catalog to take the default tests from ({exc}); pass the test names "
                         "explicitly (--tests import,family:llama)") from exc
    return [t.name for t in TESTS if device in tuple(getattr(t, "devices", ("cpu", "cuda")))
            and getattr(t, "default", True)]


@dataclass
class _Revision:
    """A revision's shared state between the worker threads."""

    rev: Revision
    cache_dir: Path
    method: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    identity: str | None = None
    identity_error: str | None = None
    prepared: PreparedRevision | None = None
    started: float | None = None
    ended: float | None = None
    remaining: int = 0

    def get_identity(self) -> str | None:
        with self.lock:
            if self.identity is None and self.identity_error is None:
                try:
                    self.identity = revision_identity(self.rev, cache_dir=self.cache_dir)
                except HarnessError as exc:
                    self.identity_error = f"prepare failed: {exc}"
            return self.identity

    def get_prepared(self) -> PreparedRevision:
        with self.lock:
            if self.prepared is None:
                self.prepared = prepare_revision(self.rev, cache_dir=self.cache_dir, method=self.method)
            return self.prepared

    def mark(self, start: float, end: float) -> None:
        with self.lock:
            self.started = start if self.started is None else min(self.started, start)
            self.ended = end if self.ended is None else max(self.ended, end)

    def done_one(self) -> bool:
        """Count a finished probe; True for the revision's last one."""
        with self.lock:
            self.remaining -= 1
            return self.remaining == 0


class _Stopped(Exception):
    """A probe was cut short by the sweep's own interruption (never cached)."""


def _timings(states: Sequence[_Revision], results: dict[tuple[str, str], ProbeResult]) -> tuple[RevisionTiming, ...]:
    out = []
    for st in states:
        mine = [r for (spec, _), r in results.items() if spec == st.rev.spec]
        statuses: dict[str, int] = {}
        for r in mine:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        prepared = st.prepared
        out.append(RevisionTiming(
            spec=st.rev.spec, prepare_s=round(prepared.prepare_s, 3) if prepared else 0.0,
            probe_s=round(sum(r.duration_s for r in mine if not r.cached), 3),
            wall_s=round((st.ended - st.started) if st.started is not None and st.ended is not None else 0.0, 3),
            probes=len(mine), new=sum(1 for r in mine if not r.cached), statuses=statuses,
            error=(prepared.error if prepared else None) or st.identity_error,
        ))
    return tuple(out)


def run_sweep_report(
    specs: Sequence[str | Revision], *, tests: Sequence[Any] | None = None, device: str = "cpu", jobs: int = 1,
    timeout_s: float | None = None, cache_dir: Path | None = None, repo: str | None = None,
    refresh: bool = False, progress: bool = True, method: str = "pythonpath",
    on_result: Callable[[ProbeResult], None] | None = None, skips: Mapping[tuple[str, str], str] | None = None,
    launch: str | None = None,
) -> SweepReport:
    """Probe every test at every revision; see the module docstring.

    ``launch``: how probes start (:func:`harness.probes.forkpool.launch_mode`: a child of the revision's warm
    fork server by default, ``"fresh"`` for an interpreter per probe); a revision's server is closed once
    its last probe is done.

    ``on_result`` is called in the calling thread for each result as it arrives (cached ones too).
    ``skips`` (``{(spec, test): reason}``, :func:`harness.probes.skips.static_skips`) are not launched: without a
    cached result, each is a ``skipped`` result saying why (not cached; the revision is not prepared for it).

    Raises:
        RevisionError: a spec is malformed or unknown (checked before anything runs).
        ProbeError: no tests given and no catalog to take them from.
        KeyboardInterrupt: after killing the running probes; finished ones stay cached.
    """
    start = time.perf_counter()
    cache_dir = cache_dir or default_cache_dir()
    revisions = {}
    for s in specs:  # the same revision named twice is probed once
        rev = resolve_revision(s, repo=repo, cache_dir=cache_dir)
        revisions.setdefault(rev.spec, rev)
    states = [_Revision(rev, cache_dir, method) for rev in revisions.values()]
    names = list(dict.fromkeys(test_name(t) for t in tests)) if tests is not None else default_tests(device)
    cache = ProbeCache(cache_dir)
    environment = environment_id(method)
    stopping = threading.Event()

    def task(st: _Revision, name: str) -> ProbeResult:
        began = time.perf_counter()
        try:
            identity = st.get_identity()
            key = probe_key(identity, name, device, environment=environment) if identity else None
            if key and not refresh:
                hit = cache.get(key)
                if hit is not None:
                    return hit
            if stopping.is_set():
                raise _Stopped
            reason = (skips or {}).get((st.rev.spec, name))
            if reason is not None:
                return not_launched_result(st.rev.spec, name, reason, device=device, version=st.rev.version)
            if identity is None:
                return ProbeResult(st.rev.spec, name, "error", details=str(st.identity_error),
                                   meta={"device": device, "mcore_version": st.rev.version})
            prepared = st.get_prepared()
            result = run_probe(prepared, name, device=device, timeout_s=timeout_s, launch=launch)
            if stopping.is_set():
                raise _Stopped
            if key and not prepared.error:
                cache.put(key, result)
            return result
        finally:
            st.mark(began, time.perf_counter())
            if st.done_one():
                close_servers(st.rev.spec)  # its imports are no longer needed: free the memory

    todo = [(st, name) for st in states for name in names]
    for st in states:
        st.remaining = len(names)
    results: dict[tuple[str, str], ProbeResult] = {}
    bar = tqdm(total=len(todo), desc=f"probes ({device})", unit="probe", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="probe")
    futures: dict[Future[ProbeResult], tuple[str, str]] = {
        pool.submit(task, st, name): (st.rev.spec, name) for st, name in todo
    }
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                result = fut.result()
                results[futures[fut]] = result
                bar.update(1)
                bar.set_postfix_str(f"{result.spec} {result.test}: {result.status}", refresh=False)
                log.info("%s %s (%s): %s%s", result.spec, result.test, device, result.status,
                         " (cached)" if result.cached else f" in {result.duration_s:.1f}s")
                if on_result is not None:
                    on_result(result)
    except BaseException:
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        killed = kill_active_probes()
        log.warning("sweep interrupted: %d finished probes are cached, %d running probes killed",
                    len(results), killed)
        pool.shutdown(wait=True)
        raise
    finally:
        bar.close()
        close_servers()
    pool.shutdown(wait=True)
    ordered = tuple(results[(st.rev.spec, name)] for st, name in todo)
    report = SweepReport(ordered, _timings(states, results), time.perf_counter() - start, device, max(1, jobs))
    log.info("sweep: %d probes (%d new) over %d revisions in %.1fs", len(ordered), report.new_probes,
             len(states), report.total_s)
    return report


def run_sweep(specs: Sequence[str | Revision], *, tests: Sequence[Any] | None = None, device: str = "cpu",
              jobs: int = 1, timeout_s: float | None = None, cache_dir: Path | None = None,
              repo: str | None = None, refresh: bool = False, progress: bool = True,
              skips: Mapping[tuple[str, str], str] | None = None, launch: str | None = None) -> list[ProbeResult]:
    """The results of :func:`run_sweep_report` (the agreed interface; the report adds timing)."""
    return list(run_sweep_report(specs, tests=tests, device=device, jobs=jobs, timeout_s=timeout_s,
                                 cache_dir=cache_dir, repo=repo, refresh=refresh, progress=progress,
                                 skips=skips, launch=launch).results)
