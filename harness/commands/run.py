"""``mcore-compat run --mcore-repo URL_OR_PATH --mcore-commit SHA``: test this project at an
upstream Megatron-LM commit, against the pinned one.

Moves ``3rdparty/Megatron-LM`` to the commit (fetched from ``--mcore-repo``; nothing is
staged or committed, and the submodule is restored afterwards unless ``--keep-submodule``),
then runs the suites on the target commit and on the pinned commit:

- ``static``: the harness's source scan and verdicts (families and features);
- ``dynamic``: the probes (``harness.probes``: import, every family, features, recipes)
  run in subprocesses with each revision's sources first on ``PYTHONPATH``; a probe whose model
  class the static scan finds absent (``hybrid:*`` before 0.18) is recorded as ``skipped`` with the
  reason instead (:func:`harness.probes.skips.comparison_skips`: at the target only where the
  baseline skips it too).

Writes ``matrix.{json,md,html}``, ``features.md``, ``summary.md`` and ``run.json`` into
``--out`` and prints the summary. Exit codes: 0 nothing that worked at the pinned commit
broke; 1 a family broke (the summary names the family, the check and the reason); 2 usage
errors (unreachable repository, unknown commit with the closest refs, dirty submodule).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.cache import atomic_write_text
from harness.ci import Break, RunReport, dynamic_breaks, render_summary, static_breaks
from harness.commands._common import add_cache, add_launch, introspector
from harness.errors import HarnessError, RevisionError
from harness.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from harness.matrix import Matrix, build_matrix
from harness.render import write_reports
from harness.requirements import requirement_rows
from harness.scanning import scan_renames, scan_revisions
from harness.upstream import CheckoutError, SubmoduleCheckout
from harness.versions import SUBMODULE_PATH, project_root, version_for_commit

__all__ = ["HELP", "SUITES", "add_arguments", "default_probes", "run"]

HELP = "test an upstream Megatron-LM commit against the pinned one (static and dynamic suites)"

SUITES = ("static", "dynamic", "all")
LEFT_OUT = ("properties",)
"""Probes the dynamic suite skips by default (besides multi-process ones): a long randomised search."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mcore-repo", required=True, metavar="URL_OR_PATH",
                        help="repository to fetch the commit from (URL, file:// URL or local path)")
    parser.add_argument("--mcore-commit", required=True, metavar="SHA",
                        help="the commit to test (SHA; a tag or branch of --mcore-repo also works)")
    parser.add_argument("--suite", choices=SUITES, default="all",
                        help="static (source scan), dynamic (probes), or all (default)")
    parser.add_argument("--out", type=Path, default=Path("mcore-compat-run"), metavar="DIR",
                        help="report directory (default: ./mcore-compat-run)")
    parser.add_argument("--baseline", metavar="REV",
                        help=f"compare with REV instead of the pinned {SUBMODULE_PATH} commit")
    parser.add_argument("--tests", metavar="NAMES",
                        help="comma-separated probes for the dynamic suite "
                             "(default: import, every family, features, recipes)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="probe device (default cpu)")
    parser.add_argument("--jobs", type=int, default=1, help="probes run in parallel (default 1)")
    parser.add_argument("--timeout", type=float, metavar="S", help="per-probe timeout in seconds")
    parser.add_argument("--project", type=Path, metavar="DIR",
                        help="the checkout whose submodule moves (default: this project)")
    parser.add_argument("--keep-submodule", action="store_true",
                        help="leave the submodule at the tested commit (default: restore it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_launch(parser)
    add_cache(parser)


def _suites(choice: str) -> tuple[str, ...]:
    return ("static", "dynamic") if choice == "all" else (choice,)


def _baseline(args: argparse.Namespace, checkout: SubmoduleCheckout) -> tuple[str, list[str]]:
    """The comparison revision: --baseline, else the pinned commit (or its release when the repo lacks it)."""
    if args.baseline:
        return args.baseline, []
    pinned = checkout.pinned
    if checkout.has_commit(pinned):
        return f"git:{pinned}", []
    version = version_for_commit(pinned)
    if version is None:
        raise RevisionError(
            f"the pinned commit {pinned} is not in {checkout.source} and is not a known release; expected "
            f"--mcore-repo to hold it, or pass --baseline REV (e.g. pypi:X.Y.Z)"
        )
    return f"pypi:{version}", [f"the pinned commit {pinned[:12]} is not in {checkout.source}; "
                               f"compared with the release it is tagged as, pypi:{version}"]


def _platform(args: argparse.Namespace) -> str:
    """The matrix platform the probes report under (``cpu`` / ``gpu``)."""
    return "gpu" if args.device == "cuda" else "cpu"


def default_probes(tests: Sequence[Any]) -> list[str]:
    """The dynamic suite's probes: the catalog's default ones (not ``ckpt_compat:*``, hours of CPU), less the
    multi-process ones and :data:`LEFT_OUT`."""
    return [t.name for t in tests if t.default and not t.multiprocess and t.name not in LEFT_OUT]


def _dynamic(args: argparse.Namespace, specs: list[str], repo: str,
             matrix: Matrix) -> tuple[Matrix, list[Any], dict[str, tuple[str, ...]]]:
    """Run the probes at both revisions and fold them into ``matrix``."""
    try:
        from harness.probes.catalog import TESTS
        from harness.probes.fold import fold_results
        from harness.probes.skips import comparison_skips
        from harness.probes.sweep import run_sweep
    except ImportError as exc:
        raise HarnessError(f"the dynamic suite needs harness.probes ({exc}); run with --suite static") from exc
    names = [t.strip() for t in args.tests.split(",") if t.strip()] if args.tests else default_probes(TESTS)
    skips = comparison_skips(matrix, specs[0], specs[1], names)  # e.g. hybrid:* where HybridModel is absent
    results = run_sweep(specs, tests=names, device=args.device, jobs=args.jobs, timeout_s=args.timeout,
                        cache_dir=args.cache_dir, repo=repo, progress=not args.no_progress, skips=skips,
                        launch=args.launch)
    declared = {t.name: tuple(t.rows) for t in TESTS}
    return fold_results(matrix, results, platform=_platform(args)), list(results), declared


def _judge(args: argparse.Namespace, checkout: SubmoduleCheckout, suites: tuple[str, ...]
           ) -> tuple[Matrix, list[Break], list[str], int]:
    repo = str(checkout.path)
    baseline, notes = _baseline(args, checkout)
    intros = scan_revisions([baseline, f"git:{checkout.target}"], repo=repo, introspector=introspector(args),
                            progress=not args.no_progress)
    matrix = build_matrix(intros, requirement_rows(), scan_renames(intros))
    base_spec, target_spec = (i.revision.spec for i in intros)
    kinds = {r["name"]: r["kind"] for r in matrix.rows}
    breaks = static_breaks(matrix, base_spec, target_spec) if "static" in suites else []
    probes = 0
    if "dynamic" in suites:
        matrix, results, declared = _dynamic(args, [base_spec, target_spec], repo, matrix)
        probes = len(results)
        families = [name for name, kind in kinds.items() if kind == "family"]
        breaks += dynamic_breaks(results, base_spec, target_spec, families=families, kinds=kinds,
                                 declared_rows=declared)
    return matrix, breaks, notes, probes


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    suites = _suites(args.suite)
    checkout = SubmoduleCheckout(args.project or project_root(), args.mcore_repo, args.mcore_commit,
                                 keep=args.keep_submodule)
    try:
        with checkout:
            matrix, breaks, notes, probes = _judge(args, checkout, suites)
    except CheckoutError as exc:
        print(f"mcore-compat run: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if checkout.outcome:
            print(f"mcore-compat run: {checkout.outcome}", file=sys.stderr)
    paths = write_reports(matrix, args.out)
    base_entry, target_entry = matrix.revisions[0], matrix.revisions[1]
    report = RunReport(
        baseline=base_entry, target=target_entry, source=checkout.source, suites=suites, breaks=tuple(breaks),
        submodule=checkout.outcome, notes=tuple(notes), files=("summary.md", "run.json", *(p.name for p in paths)),
        probes=probes, family_rows=tuple(r["name"] for r in matrix.rows if r["kind"] == "family"),
        baseline_origin="--baseline" if args.baseline else "the pinned commit",
    )
    summary = render_summary(report, matrix, platform=_platform(args) if "dynamic" in suites else None)
    atomic_write_text(args.out / "summary.md", summary)
    run_json = _run_json(report, time.perf_counter() - start)
    atomic_write_text(args.out / "run.json", json.dumps(run_json, indent=1) + "\n")
    sys.stdout.write(summary)
    print(f"\nwrote {args.out}/ (summary.md, run.json, {', '.join(p.name for p in paths)}) "
          f"in {time.perf_counter() - start:.1f}s")
    return EXIT_FAILURE if report.families_broken else EXIT_OK


def _run_json(report: RunReport, seconds: float) -> dict[str, Any]:
    return {
        "baseline": report.baseline, "target": report.target, "source": report.source,
        "suites": list(report.suites), "families_broken": report.families_broken,
        "breaks": [asdict(b) for b in report.breaks], "submodule": report.submodule,
        "notes": list(report.notes), "probes": report.probes, "seconds": round(seconds, 1),
    }
