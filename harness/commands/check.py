"""``mcore-compat check PATH_OR_HUB_ID [--mcore REV...] [--json PATH]``: will this model run on MCore X?

Reads the checkpoint's ``config.json`` only (no weights; custom code only with
``--trust-remote-code``), derives exactly what that model needs from MCore, and prints per revision
whether it runs there and what blocks it, from the static scan plus the probe results of the
committed matrix (``matrices/matrix.json``, or ``--matrix``). See :mod:`harness.model_check`.

Revisions: ``--mcore`` (any spec), else every revision of the matrix. A local checkpoint's needs
are cached, so a second check of the same config imports neither torch nor transformers.

``--json`` writes ``{"model", "family", "architecture", "needs", "revisions": {spec: {"runs",
"blocked_by", "static", "probes", "notes"}}}``. Exit code 0, or 1 when ``--mcore`` names a revision
the model does not run on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness.commands._common import add_cache, add_json, add_repo, introspector, write_json
from harness.errors import HarnessError
from harness.exitcodes import EXIT_FAILURE, EXIT_OK
from harness.matrix import Matrix, load_matrix
from harness.model_check import judge, model_needs, variant_checks
from harness.render.common import column_label
from harness.versions import project_root

__all__ = ["HELP", "add_arguments", "run"]

HELP = "will this checkpoint run on each MCore revision? (its config only; what blocks it, per revision)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="PATH_OR_HUB_ID",
                        help="an HF checkpoint directory (or its config.json), or a Hub ID org/name")
    parser.add_argument("--mcore", nargs="+", metavar="REV",
                        help="revisions to judge (default: every revision of the matrix)")
    parser.add_argument("--matrix", type=Path, metavar="PATH",
                        help="the matrix whose probe results are used (default: <project>/matrices/matrix.json)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow the checkpoint's own configuration code (auto_map) to run")
    add_json(parser)
    add_repo(parser)
    add_cache(parser)


def _matrix(args: argparse.Namespace) -> Matrix | None:
    path = args.matrix or project_root() / "matrices" / "matrix.json"
    if args.matrix is None and not path.exists():
        return None
    return load_matrix(path)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    needs = model_needs(args.model, trust_remote_code=args.trust_remote_code or None, cache_dir=args.cache_dir)
    derived = time.perf_counter()
    matrix = _matrix(args)
    specs = list(args.mcore or [r["spec"] for r in (matrix.revisions if matrix else [])])
    if not specs:
        raise HarnessError("no revisions to judge: expected --mcore REV... or a matrix with revisions "
                           f"(--matrix PATH; {project_root() / 'matrices' / 'matrix.json'} is absent)")
    entries = {r["spec"]: r for r in (matrix.revisions if matrix else [])}
    variants = variant_checks(matrix, needs.family)
    intro = introspector(args)
    answers = []
    for spec in specs:
        found = intro.introspect(spec, repo=args.repo)
        cell = matrix.cell(needs.family, found.revision.spec) if matrix else None
        answers.append(judge(needs, found, cell=cell, variant_checks=variants))
    report = {
        "model": args.model, "family": needs.family, "architecture": needs.architecture, "needs": list(needs.checks),
        "revisions": {a.spec: a.to_json() for a in answers},
    }
    write_json(args.json, report)
    if str(args.json) != "-":
        runs = [a for a in answers if a.runs]
        print(f"{args.model}: {needs.architecture} (family {needs.family}), needs {len(needs.checks)} checks; "
              f"runs on {len(runs)} of {len(answers)} revisions ({time.perf_counter() - start:.2f}s, needs "
              f"{'cached' if needs.cached else f'derived in {derived - start:.1f}s'})")
        for a in answers:
            label = column_label(entries.get(a.spec) or {"spec": a.spec})
            print(f"  {label:>14}  " + ("runs" if a.runs else "blocked by " + "; ".join(a.blocked_by)))
            for note in a.notes:
                if not note.startswith("no probe results"):
                    print(f"  {'':>14}  note: {note}")
    blocked = [a for a in answers if not a.runs]
    return EXIT_FAILURE if args.mcore and blocked else EXIT_OK
