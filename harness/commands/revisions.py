"""``mcore-compat revisions [--dynamic] [--include-main] [--json]``: the revisions a sweep covers.

One source of truth (:mod:`harness.versions`): CI's fan-out job reads this list
(``strategy.matrix``), so a release added to ``RELEASES`` gets its own job with no workflow edit.
``--json`` prints one JSON array of revision specs on one line (for ``$GITHUB_OUTPUT``); without
it, one spec per line.
"""

from __future__ import annotations

import argparse
import json

from harness.commands._common import add_cache, add_repo
from harness.exitcodes import EXIT_OK
from harness.versions import DYNAMIC_RELEASES, RELEASES

__all__ = ["HELP", "add_arguments", "revision_specs", "run"]

HELP = "list the revisions a matrix or a sweep covers (--json for CI's strategy.matrix)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dynamic", action="store_true",
                        help="only the releases the probes run against (0.8.0 onward), as `mcore-compat sweep` does")
    parser.add_argument("--include-main", action="store_true",
                        help="append upstream main, resolved to its commit (git:<sha>; from --repo or the submodule), "
                             "so every job of a fan-out tests the same commit")
    parser.add_argument("--json", action="store_true", help="print a JSON array of specs on one line")
    add_repo(parser)
    add_cache(parser)


def revision_specs(*, dynamic: bool = False) -> list[str]:
    """Every release as a ``pypi:`` spec, oldest first (``dynamic``: only :data:`DYNAMIC_RELEASES`)."""
    return [f"pypi:{v}" for v in (DYNAMIC_RELEASES if dynamic else RELEASES)]


def run(args: argparse.Namespace) -> int:
    specs = revision_specs(dynamic=args.dynamic)
    if args.include_main:
        from harness.mainline import resolve_main

        specs.append(resolve_main(args.repo, cache_dir=args.cache_dir).spec)
    print(json.dumps(specs) if args.json else "\n".join(specs))
    return EXIT_OK
