"""``mcore-compat bisect FIELD [--repo PATH]``: the first commit where a ``TransformerConfig``
field exists, and the commit where it disappears (if it does). Exit 1 if it never exists."""

from __future__ import annotations

import argparse

from harness import gitrepo
from harness.commands._common import add_cache, add_json, add_repo, introspector, write_json
from harness.exitcodes import EXIT_FAILURE, EXIT_OK
from harness.history import bisect_field

__all__ = ["HELP", "add_arguments", "run"]

HELP = "find the commit where a TransformerConfig field appears (and where it disappears)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("field", metavar="FIELD", help="a TransformerConfig field name")
    add_repo(parser)
    parser.add_argument("--to", dest="end", default="HEAD", metavar="REV", help="search up to this commit")
    add_json(parser)
    add_cache(parser)


def _describe(info: dict) -> str:
    tags = f" [{', '.join(info['tags'])}]" if info["tags"] else ""
    rel = f", first released in {info['first_release']}" if info.get("first_release") else ""
    return f"{info['commit']} ({info['date'][:10]}{tags}{rel}) {info['subject'][:70]}"


def run(args: argparse.Namespace) -> int:
    intro = introspector(args)
    repo = gitrepo.open_repo(args.repo, intro.cache_dir)
    result = bisect_field(repo, args.field, intro, end=gitrepo.resolve_ref(repo, args.end))
    write_json(args.json, result.to_json())
    if str(args.json) != "-":
        if result.first is None:
            print(f"{args.field}: not found in any of {result.commits_read} commits touching the config")
        else:
            print(f"{args.field} appears in {_describe(result.first)}")
            for info in result.removals:
                print(f"{args.field} disappears in {_describe(info)}")
            for info in result.returns:
                print(f"{args.field} returns in {_describe(info)}")
            if result.removed is None:
                print(f"{args.field} still exists at {args.end}")
    return EXIT_OK if result.first is not None else EXIT_FAILURE
