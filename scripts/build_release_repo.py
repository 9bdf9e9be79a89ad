#!/usr/bin/env python
"""Build a local git repository whose commits are real megatron-core releases.

Each commit holds one release's ``megatron/**`` files, unpacked from its PyPI archive
(compiled ``*.so`` files left out), in version order, tagged ``core_vX.Y.Z`` and dated from
the upstream tag table. Use it as ``--repo`` for ``git:`` revisions, ``history`` and
``bisect`` when the Megatron-LM submodule is not available::

    python scripts/build_release_repo.py --dest /tmp/mcore-releases --versions 0.8.0,0.13.0
    mcore-compat bisect attention_backend --repo /tmp/mcore-releases
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.cache import default_cache_dir
from harness.release_repo import build_release_repo
from harness.versions import RELEASES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, help="repository path (default: under the cache)")
    parser.add_argument("--versions", default=",".join(RELEASES),
                        help="comma-separated releases (default: all of harness.versions.RELEASES)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="archive cache root")
    args = parser.parse_args(argv)
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    unknown = [v for v in versions if v not in RELEASES]
    if unknown:
        parser.error(f"unknown releases {unknown}; known: {', '.join(RELEASES)}")
    start = time.perf_counter()
    path = build_release_repo(versions, args.dest, cache_dir=args.cache_dir or default_cache_dir())
    print(f"{path}: {len(versions)} releases in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
