"""``mcore-compat merge A.json B.json ... --out DIR``: merge matrix JSON files.

Later files win per cell (row x revision); every cell keeps its provenance (the file it was
taken from). Writes the merged ``matrix.json`` and its reports into DIR, or only the JSON
with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands._common import add_json
from harness.exitcodes import EXIT_OK, EXIT_USAGE
from harness.matrix import load_matrix, merge_matrices
from harness.render import write_reports

__all__ = ["HELP", "add_arguments", "run"]

HELP = "merge matrix JSON files (later files win per cell; provenance kept)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="MATRIX_JSON")
    parser.add_argument("--out", type=Path, metavar="DIR", help="write matrix.json/md/html and features.md here")
    add_json(parser)


def run(args: argparse.Namespace) -> int:
    if args.out is None and args.json is None:
        print("mcore-compat merge: error: give --out DIR (reports) or --json PATH (the merged matrix.json)",
              file=sys.stderr)
        return EXIT_USAGE
    merged = merge_matrices([(str(p), load_matrix(p)) for p in args.inputs])
    if args.json is not None and str(args.json) == "-":
        sys.stdout.write(merged.dumps())
    elif args.json is not None:
        merged.save(args.json)
    if args.out is not None:
        for p in write_reports(merged, args.out):
            print(f"wrote {p}")
    return EXIT_OK
