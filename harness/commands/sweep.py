"""``mcore-compat sweep [REV...]``: run the dynamic probes over revisions and fold them into the matrix.

Each probe runs in a subprocess under the revision's megatron-core (``harness.probes``): a revision
that fails to import, crashes or hangs becomes ``error`` / ``timeout`` cells with the reason, and the
sweep goes on. Results are cached as they finish, so an interrupted sweep resumes where it stopped
(``--refresh`` runs everything again). A probe whose model class the static scan finds absent at a
revision (``hybrid:*`` before 0.18) is not launched there: its cells are ``skipped`` with the reason
(:mod:`harness.probes.skips`).

The results are folded, as platform ``--platform`` (default: ``gpu`` for ``--device cuda``, else
``cpu``), into the matrix ``--matrix`` (revisions it lacks are scanned and added). Without ``--matrix``
it is ``--out``'s existing ``matrix.json``, so other revisions' and platforms' results survive a sweep;
with ``--fresh-matrix``, or when there is none, the static matrix of the given revisions is built first. Writes ``matrix.{json,md,html}``,
``features.md`` and ``sweep-<platform>.json`` (timing per revision and in total, every probe's
status) into ``--out``. Exit code 0 when the sweep ran (whatever the probes found); 130 when it was
interrupted (Ctrl-C, SIGTERM, SIGHUP: running probes are killed, finished ones stay cached).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.cache import atomic_write_text
from harness.commands._common import add_cache, add_launch, add_repo, introspector
from harness.exitcodes import EXIT_INTERRUPTED, EXIT_OK
from harness.matrix import Matrix, build_matrix, load_matrix, merge_matrices
from harness.render import write_reports
from harness.requirements import requirement_rows
from harness.scanning import scan_renames, scan_revisions
from harness.versions import DYNAMIC_RELEASES

__all__ = ["HELP", "add_arguments", "run"]


HELP = "run the dynamic probes over revisions (subprocess per probe, cached, resumable) and fold them into the matrix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revisions", nargs="*", metavar="REV",
                        help="revisions (default: every release from 0.8.0, as pypi: specs)")
    parser.add_argument("--tests", metavar="A,B", help="comma-separated probe tests (default: the whole catalog)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the probes run (default cpu)")
    parser.add_argument("--platform", choices=("cpu", "gpu"),
                        help="matrix platform to file the results under (default: gpu for cuda, else cpu)")
    parser.add_argument("--jobs", type=int, default=1, help="probes run at the same time (default 1)")
    parser.add_argument("--timeout", type=float, metavar="S", help="seconds per probe (default: each test's own)")
    parser.add_argument("--matrix", type=Path, metavar="PATH",
                        help="matrix.json to fold into (default: DIR/matrix.json of --out when it exists, so its other "
                             "revisions and platforms are kept; else one built for the given revisions)")
    parser.add_argument("--fresh-matrix", action="store_true",
                        help="ignore an existing DIR/matrix.json: build the matrix for the given revisions only")
    parser.add_argument("--out", type=Path, default=Path("matrices"), metavar="DIR",
                        help="output directory (default: matrices/)")
    parser.add_argument("--refresh", action="store_true", help="ignore cached probe results (run everything)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_launch(parser)
    add_repo(parser)
    add_cache(parser)


def _static(args: argparse.Namespace, specs: list[str], canonical: list[str]) -> Matrix:
    """The given static matrix, plus a static scan of the revisions it lacks."""
    base = load_matrix(args.matrix) if args.matrix is not None else None
    have = {r["spec"] for r in base.revisions} if base else set()
    todo = [s for s, c in zip(specs, canonical) if c not in have]
    if not todo:
        assert base is not None
        return base
    intros = scan_revisions(todo, repo=args.repo, introspector=introspector(args), progress=not args.no_progress)
    scanned = build_matrix(intros, requirement_rows(), scan_renames(intros))
    return merge_matrices([(str(args.matrix), base), ("static scan", scanned)]) if base else scanned


def _sweep_json(report: Any, platform: str) -> dict[str, Any]:
    data = report.to_json()
    data["platform"] = platform
    data["results"] = [{"revision": r.spec, "test": r.test, "status": r.status, "details": r.details,
                        "duration_s": round(r.duration_s, 3), "cached": r.cached} for r in report.results]
    return data


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM / SIGHUP stop the sweep like Ctrl-C: running probes (own process groups) are killed, not orphaned."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    from harness.probes.fold import fold_results
    from harness.probes.skips import static_skips
    from harness.probes.sweep import default_tests, run_sweep_report
    from harness.revisions import resolve_revision

    specs = args.revisions or [f"pypi:{v}" for v in DYNAMIC_RELEASES]
    canonical = [resolve_revision(s, repo=args.repo, cache_dir=args.cache_dir).spec for s in specs]
    tests = [t.strip() for t in args.tests.split(",") if t.strip()] if args.tests else None
    platform = args.platform or ("gpu" if args.device == "cuda" else "cpu")
    existing = args.out / "matrix.json"
    if args.matrix is None and not args.fresh_matrix and existing.exists():
        args.matrix = existing  # rewriting it without its other revisions and platforms would lose them
        print(f"mcore-compat sweep: folding into {existing} (its other results are kept; --fresh-matrix builds "
              "one for the given revisions only)", file=sys.stderr)
    matrix = _static(args, specs, canonical)
    skips = static_skips(matrix, canonical, tests if tests is not None else default_tests(args.device))
    try:
        with _terminate_as_interrupt():
            report = run_sweep_report(specs, tests=tests, device=args.device, jobs=args.jobs,
                                      timeout_s=args.timeout, cache_dir=args.cache_dir, repo=args.repo,
                                      refresh=args.refresh, progress=not args.no_progress, skips=skips,
                                      launch=args.launch)
    except KeyboardInterrupt as exc:
        print(f"mcore-compat sweep: interrupted ({exc or 'Ctrl-C'}); finished probes are cached, run the same "
              "command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    timings = {t.spec: {k: v for k, v in vars(t).items() if k != "spec"} for t in report.revisions}
    folded = fold_results(matrix, report.results, platform=platform, timings=timings)
    paths = write_reports(folded, args.out)
    sweep_path = args.out / f"sweep-{platform}.json"
    atomic_write_text(sweep_path, json.dumps(_sweep_json(report, platform), indent=1) + "\n")
    statuses: dict[str, int] = {}
    for r in report.results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    agreement: dict[str, int] = {}
    for cell in folded.cells.values():
        if cell.get("agreement"):
            agreement[cell["agreement"]] = agreement.get(cell["agreement"], 0) + 1
    print(f"sweep ({platform}, {args.device}): {len(report.results)} probes ({report.new_probes} run, "
          f"{len(report.results) - report.new_probes} cached) over {len(report.revisions)} revisions in "
          f"{report.total_s:.1f}s: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
          + ("; static vs dynamic: " + ", ".join(f"{n} {a}" for a, n in sorted(agreement.items()))
             if agreement else ""))
    for t in report.revisions:
        print(f"  {t.spec}: prepare {t.prepare_s:.1f}s, probes {t.probe_s:.1f}s, wall {t.wall_s:.1f}s, "
              f"{t.new}/{t.probes} run" + (f" ({t.error})" if t.error else ""))
    for p in [*paths, sweep_path]:
        print(f"  wrote {p}")
    return EXIT_OK
