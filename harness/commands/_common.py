"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.cache import atomic_write_text
from harness.introspect import Introspector

__all__ = ["add_cache", "add_json", "add_launch", "add_repo", "introspector", "write_json"]


def add_repo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", metavar="PATH_OR_URL",
                        help="git repository for git: revisions (default: the 3rdparty/Megatron-LM submodule)")


def add_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, metavar="DIR",
                        help="cache root (default: $MCORE_COMPAT_CACHE or ~/.cache/mcore-compat)")


def add_launch(parser: argparse.ArgumentParser) -> None:
    """``--launch fork|fresh``: how probes start (:func:`harness.probes.forkpool.launch_mode`)."""
    parser.add_argument("--launch", choices=("fork", "fresh"),
                        help="fork: each probe is forked from a warm process per revision that imported MCore "
                             "once (default where safe); fresh: a new interpreter per probe "
                             "(default: $MCORE_COMPAT_PROBE_LAUNCH, else fork)")


def add_json(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument("--json", type=Path, metavar="PATH", required=required,
                        help="write the result as JSON to PATH ('-' for stdout)")


def introspector(args: argparse.Namespace) -> Introspector:
    return Introspector(getattr(args, "cache_dir", None))


def write_json(path: Path | None, payload: Any) -> None:
    if path is None:
        return
    text = json.dumps(payload, indent=1) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(path, text)
