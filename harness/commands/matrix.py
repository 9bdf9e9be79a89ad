"""``mcore-compat matrix [REV...] --out DIR``: the compatibility matrix and its reports.

Writes ``matrix.json`` (source of truth), ``matrix.md``, ``matrix.html`` and ``features.md``
into DIR, and ``bridge/data/field_history.json`` (with the default revisions, or when
``--field-history`` is given). Revisions that cannot be read become error columns.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness.commands._common import add_cache, add_repo, introspector
from harness.field_history import FIELD_HISTORY_PATH, build_field_history, write_field_history
from harness.matrix import build_matrix
from harness.render import write_reports
from harness.requirements import requirement_rows
from harness.scanning import release_snapshots, scan_renames, scan_revisions
from harness.versions import default_revisions, project_root

__all__ = ["HELP", "add_arguments", "run"]

HELP = "build the compatibility matrix (families and features x revisions) and its reports"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revisions", nargs="*", metavar="REV",
                        help="revisions (default: every release, plus the pinned submodule commit)")
    parser.add_argument("--out", type=Path, default=Path("matrices"), metavar="DIR",
                        help="output directory (default: matrices/)")
    parser.add_argument("--field-history", type=Path, metavar="PATH",
                        help=f"write the field history here (default with no REV: <project>/{FIELD_HISTORY_PATH})")
    parser.add_argument("--no-field-history", action="store_true", help="do not write the field history")
    parser.add_argument("--no-families", action="store_true",
                        help="feature rows only (skip deriving the bridge families' requirements)")
    parser.add_argument("--jobs", type=int, default=4, help="parallel downloads (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_repo(parser)
    add_cache(parser)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    specs = args.revisions or default_revisions()
    intros = scan_revisions(specs, repo=args.repo, introspector=introspector(args),
                            jobs=args.jobs, progress=not args.no_progress)
    scanned = time.perf_counter()
    renames = scan_renames(intros)
    rows = requirement_rows([] if args.no_families else None)
    derived = time.perf_counter()
    matrix = build_matrix(intros, rows, renames)
    paths = write_reports(matrix, args.out)
    history_path = args.field_history
    if history_path is None and not args.revisions:
        history_path = project_root() / FIELD_HISTORY_PATH
    if history_path is not None and not args.no_field_history:
        write_field_history(build_field_history(release_snapshots(intros), renames), history_path)
        paths.append(history_path)
    errors = [i.revision.spec for i in intros if i.error]
    families = sum(1 for r in rows if r.kind == "family")
    print(f"matrix: {len(intros)} revisions x {len(rows)} rows ({families} families) in "
          f"{time.perf_counter() - start:.1f}s (fetch + scan {scanned - start:.1f}s, family requirements "
          f"{derived - scanned:.1f}s, verdicts + reports {time.perf_counter() - derived:.1f}s); "
          f"{len(errors)} unreadable" + (f" ({', '.join(errors)})" if errors else ""))
    for p in paths:
        print(f"  wrote {p}")
    return 0
