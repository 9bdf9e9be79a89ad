"""``mcore-compat history [--repo PATH] [--from REV] [--to REV] --json PATH``.

One entry per first-parent commit (oldest first) that changed ``TransformerConfig``'s
fields: fields added, removed, default changed, type changed.
"""

from __future__ import annotations

import argparse

from harness import gitrepo
from harness.commands._common import add_cache, add_json, add_repo, introspector, write_json
from harness.exitcodes import EXIT_OK
from harness.history import field_history

__all__ = ["HELP", "add_arguments", "run"]

HELP = "list the commits that changed TransformerConfig's fields (added/removed/default changed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_repo(parser)
    parser.add_argument("--from", dest="start", metavar="REV", help="start after this commit/tag")
    parser.add_argument("--to", dest="end", default="HEAD", metavar="REV", help="end at this commit/tag")
    add_json(parser)
    add_cache(parser)


def run(args: argparse.Namespace) -> int:
    intro = introspector(args)
    repo = gitrepo.open_repo(args.repo, intro.cache_dir)
    start = gitrepo.resolve_ref(repo, args.start) if args.start else None
    end = gitrepo.resolve_ref(repo, args.end)
    entries = field_history(repo, intro, start=start, end=end)
    write_json(args.json, [e.to_json() for e in entries])
    if str(args.json) != "-":
        for e in entries:
            tags = f" [{', '.join(e.tags)}]" if e.tags else ""
            what = e.error or (f"+{len(e.added)} -{len(e.removed)} ~{len(e.default_changed)}"
                               f" type~{len(e.type_changed)}")
            print(f"{e.commit[:12]} {e.date[:10]}{tags} {what}  {e.subject[:60]}")
    return EXIT_OK
