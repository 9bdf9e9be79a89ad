"""``mcore-compat diff REV_A REV_B``: what changed for bridge users between two revisions.

Renames come from the known list and from what the two revisions show.
"""

from __future__ import annotations

import argparse

from harness.commands._common import add_cache, add_json, add_repo, introspector, write_json
from harness.diff import diff_introspections
from harness.exitcodes import EXIT_FAILURE, EXIT_OK
from harness.renames import KNOWN_RENAMES, RenameTable
from harness.requirements import requirement_rows
from harness.scanning import scan_renames, scan_revisions

__all__ = ["HELP", "add_arguments", "run"]

HELP = "compare two revisions: fields, defaults, GPTModel params, layer specs, modules, verdicts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="REV_A")
    parser.add_argument("b", metavar="REV_B")
    add_repo(parser)
    parser.add_argument("--no-families", action="store_true", help="compare feature verdicts only")
    add_json(parser)
    add_cache(parser)


def _print(report: dict) -> None:
    print(f"{report['from']['spec']} -> {report['to']['spec']}")
    for side in ("from", "to"):
        if report[side]["error"]:
            print(f"  {side} error: {report[side]['error']}")
    tc = report["transformer_config"]
    for key in ("added", "removed"):
        if tc[key]:
            print(f"  TransformerConfig fields {key} ({len(tc[key])}): {', '.join(tc[key])}")
    for f, ch in tc["default_changed"].items():
        print(f"  default of {f}: {ch['from']} -> {ch['to']}")
    for f, ch in tc["type_changed"].items():
        print(f"  type of {f}: {ch['from']} -> {ch['to']}")
    for cls, ch in report["subclasses"].items():
        print(f"  {cls}: +{len(ch['added'])} -{len(ch['removed'])} fields")
    for what in ("gpt_model_params", "layer_specs"):
        for key in ("added", "removed"):
            if report[what][key]:
                print(f"  {what} {key}: {', '.join(report[what][key])}")
    for name, ch in report["modules"]["named"].items():
        print(f"  module {name}: {ch['from']} -> {ch['to']}")
    for v in report["verdicts"]:
        print(f"  {v['kind']} {v['row']}: {v['from']['status']} -> {v['to']['status']}"
              + (f" ({v['to']['details']})" if v["to"]["status"] != "supported" else ""))


def run(args: argparse.Namespace) -> int:
    intros = scan_revisions([args.a, args.b], repo=args.repo, introspector=introspector(args), progress=False)
    renames = RenameTable([*KNOWN_RENAMES, *scan_renames(intros)])
    report = diff_introspections(intros[0], intros[1], requirement_rows([] if args.no_families else None), renames)
    write_json(args.json, report)
    if str(args.json) != "-":
        _print(report)
    return EXIT_FAILURE if any(i.error for i in intros) else EXIT_OK

