"""``mcore-compat matrix [REV...] --out DIR``: the compatibility matrix and its reports.

Writes ``matrix.json`` (source of truth), ``matrix.md``, ``matrix.html`` and ``features.md``
into DIR, and ``bridge/data/field_history.json`` (with the default revisions, or when
``--field-history`` is given). Revisions that cannot be read become error columns.

``--include-main`` adds upstream main (``--repo``, default the submodule) as a ``main@<sha>`` column
after the releases, with what changed since the newest release (fields, ``GPTModel`` parameters,
rows) in the reports.

The verdicts are static (no probe runs), but the probe results (``dynamic`` cells, from
``mcore-compat sweep``) of the matrix.json being replaced are kept for the revisions still in
the matrix, their agreement recomputed against the new static verdicts: ``--dynamic-from PATH``
takes them from another matrix.json, ``--static-only`` drops them. The summary says which.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness.commands._common import add_cache, add_repo, introspector
from harness.field_history import FIELD_HISTORY_PATH, build_field_history, write_field_history
from harness.errors import HarnessError
from harness.exitcodes import EXIT_OK
from harness.introspect import Introspection
from harness.mainline import changes_since_release, label_main, newest_release, resolve_main
from harness.matrix import Matrix, build_matrix, load_matrix
from harness.renames import KNOWN_RENAMES, Rename, RenameTable
from harness.render import write_reports
from harness.requirements import Row, requirement_rows
from harness.revisions import Revision
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
    dynamic = parser.add_mutually_exclusive_group()
    dynamic.add_argument("--dynamic-from", type=Path, metavar="PATH",
                         help="keep the probe results of this matrix.json (default: DIR/matrix.json, when it exists)")
    dynamic.add_argument("--static-only", action="store_true",
                         help="drop the probe results of an existing DIR/matrix.json (static verdicts only)")
    parser.add_argument("--no-families", action="store_true",
                        help="feature rows only (skip deriving the bridge families' requirements)")
    parser.add_argument("--include-main", action="store_true",
                        help="add upstream main (of --repo, default the submodule) as a main@<sha> column, with what "
                             "changed since the newest release")
    parser.add_argument("--main-ref", default="main", metavar="REF",
                        help="with --include-main: the branch taken as main, or the commit it was resolved to before "
                             "(CI passes the one its sweep jobs used; default: main)")
    parser.add_argument("--jobs", type=int, default=4, help="parallel downloads (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_repo(parser)
    add_cache(parser)


def _previous(args: argparse.Namespace) -> Matrix | None:
    """The matrix whose probe results are kept (None: --static-only, or no DIR/matrix.json)."""
    if args.static_only:
        return None
    path = args.dynamic_from if args.dynamic_from is not None else args.out / "matrix.json"
    if args.dynamic_from is None and not path.exists():
        return None
    try:
        return load_matrix(path)
    except HarnessError as exc:
        raise HarnessError(f"{exc} (read for its probe results; pass --static-only to write the static matrix "
                           "without them)") from exc


def _keep_dynamic(matrix: Matrix, previous: Matrix | None, args: argparse.Namespace) -> tuple[Matrix, str]:
    """``matrix`` with the probe results of ``previous``, and the summary's line about them."""
    if previous is None:
        why = "--static-only" if args.static_only else f"no {args.out / 'matrix.json'} to keep them from"
        return matrix, f"dynamic (probe) cells: none, static verdicts only ({why})"
    from harness.probes.fold import carry_dynamic

    source = args.dynamic_from if args.dynamic_from is not None else args.out / "matrix.json"
    kept, carried = carry_dynamic(matrix, previous)
    if not carried.cells:
        return kept, f"dynamic (probe) cells: none ({source} has no probe results for these revisions)"
    return kept, (f"dynamic (probe) cells: included, kept from {source}: {carried.summary()} "
                  "(--static-only drops them; `mcore-compat sweep` refreshes them)")


def _label_main(matrix: Matrix, intros: list[Introspection], rows: list[Row], renames: list[Rename],
                main: Revision, ref: str) -> None:
    """Label main's column and record what changed since the newest release."""
    release = newest_release(intros)
    main_intro = next(i for i in intros if i.revision.spec == main.spec)
    changes = None
    if release is not None and not main_intro.error:
        changes = changes_since_release(release, main_intro, rows, RenameTable([*KNOWN_RENAMES, *renames]))
    label_main(matrix.revisions, main, changes, ref)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    previous = _previous(args)
    specs = list(args.revisions or default_revisions())
    main = resolve_main(args.repo, cache_dir=args.cache_dir, ref=args.main_ref) if args.include_main else None
    if main is not None and main.spec not in specs:
        specs.append(main.spec)
    intros = scan_revisions(specs, repo=args.repo, introspector=introspector(args),
                            jobs=args.jobs, progress=not args.no_progress)
    scanned = time.perf_counter()
    released = [i for i in intros if main is None or i.revision.spec != main.spec]  # main is no release
    renames = scan_renames(released)
    rows = requirement_rows([] if args.no_families else None)
    derived = time.perf_counter()
    built = build_matrix(intros, rows, renames)
    if main is not None:
        _label_main(built, intros, rows, renames, main, args.main_ref)
    matrix, dynamic = _keep_dynamic(built, previous, args)
    paths = write_reports(matrix, args.out)
    history_path = args.field_history
    if history_path is None and not args.revisions:
        history_path = project_root() / FIELD_HISTORY_PATH
    if history_path is not None and not args.no_field_history:
        write_field_history(build_field_history(release_snapshots(released), renames), history_path)
        paths.append(history_path)
    errors = [i.revision.spec for i in intros if i.error]
    families = len({r.name for r in rows if r.kind == "family" and r.model_class == "gpt"})
    classes = len({r.model_class for r in rows if r.kind == "family"})
    print(f"matrix: {len(intros)} revisions x {len(rows)} rows ({families} families x {classes} model classes) in "
          f"{time.perf_counter() - start:.1f}s (fetch + scan {scanned - start:.1f}s, family requirements "
          f"{derived - scanned:.1f}s, verdicts + reports {time.perf_counter() - derived:.1f}s); "
          f"{len(errors)} unreadable" + (f" ({', '.join(errors)})" if errors else ""))
    print(f"  {dynamic}")
    for p in paths:
        print(f"  wrote {p}")
    return EXIT_OK
