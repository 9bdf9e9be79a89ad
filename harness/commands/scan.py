"""``mcore-compat scan REV... --json PATH``: the static API of each revision.

JSON: a list with one object per revision::

    {"revision": {"spec", "version", "commit"},
     "transformer_config": {FIELD: {"type", "default", "declared_in", ...}},
     "subclasses": {CLASS: {FIELD: {...}}}, "gpt_model_params": [...],
     "layer_specs": {FUNCTION: [PARAM, ...]}, "modules": {NAME: bool}, "notes": [...],
     "error": null | "why"}
"""

from __future__ import annotations

import argparse

from harness.commands._common import add_cache, add_json, add_repo, introspector, write_json
from harness.exitcodes import EXIT_FAILURE, EXIT_OK
from harness.scanning import scan_revisions

__all__ = ["HELP", "add_arguments", "run"]

HELP = "introspect revisions statically (TransformerConfig fields, GPTModel params, layer specs, modules)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revisions", nargs="+", metavar="REV",
                        help="pypi:X.Y.Z, git:<tag|branch|sha>, path:DIR or installed")
    add_json(parser)
    add_repo(parser)
    add_cache(parser)
    parser.add_argument("--with-module-index", action="store_true",
                        help="also list every module of megatron.core in the JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    results = scan_revisions(args.revisions, repo=args.repo, introspector=introspector(args),
                             progress=not args.no_progress)
    write_json(args.json, [r.to_json(with_index=args.with_module_index) for r in results])
    if str(args.json) != "-":
        for r in results:
            status = f"error: {r.error}" if r.error else (
                f"{len(r.transformer_config)} TransformerConfig fields, {len(r.subclasses)} subclasses, "
                f"{len(r.gpt_model_params)} GPTModel params, {len(r.layer_specs)} layer-spec functions")
            print(f"{r.revision.spec} ({r.revision.version or '?'}): {status}")
    return EXIT_FAILURE if any(r.error for r in results) else EXIT_OK
