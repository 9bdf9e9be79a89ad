"""``mcore-compat reshard SRC DST --tp N --pp M``: re-layout saved Megatron shards without HF.

Reads a directory written by :func:`bridge.parallel.layout_io.save_layout` (``layout.json`` plus
one safetensors file per rank), merges and re-splits one parameter at a time, and writes the new
layout atomically (a temporary directory beside DST, renamed at the end).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.exitcodes import EXIT_FAILURE, EXIT_OK

__all__ = ["HELP", "add_arguments", "run"]

HELP = "reshard saved Megatron TP x PP shards to another layout (no HF in between)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, metavar="SRC")
    parser.add_argument("dst", type=Path, metavar="DST")
    parser.add_argument("--tp", type=int, required=True, help="target tensor-parallel size")
    parser.add_argument("--pp", type=int, required=True, help="target pipeline-parallel size")
    parser.add_argument("--first-stage-layers", type=int, default=None)
    parser.add_argument("--last-stage-layers", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing layout at DST")


def run(args: argparse.Namespace) -> int:
    from bridge.errors import CheckpointError, ParallelLayoutError
    from bridge.parallel.reshard import reshard

    try:
        layout = reshard(args.src, args.dst, tp=args.tp, pp=args.pp, first_stage_layers=args.first_stage_layers,
                         last_stage_layers=args.last_stage_layers, overwrite=args.overwrite)
    except (CheckpointError, ParallelLayoutError) as e:
        print(f"mcore-compat reshard: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"wrote {args.dst} (TP={layout.tp}, PP={layout.pipeline.pp}, {len(layout.params)} parameters)")
    return EXIT_OK
