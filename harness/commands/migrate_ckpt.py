"""``mcore-compat migrate-ckpt SRC DST --to RELEASE``: rewrite a ``torch_dist`` checkpoint so RELEASE loads it.

SRC must carry mcore-compat's record (``import-ckpt``, ``save_megatron_model``, a previous migration): it
names the release that wrote it and the model. The migration itself (:mod:`bridge.megatron_ckpt.migrate`)
runs under megatron-core RELEASE, in this process when it is the installed one, else in a subprocess with
the release prepared like the probes' (:func:`harness.probes.envs.prepare_revision`, once per release). It
builds the model there, points the storage keys it lacks at the ones SRC holds (MCore's own GPT -> HybridModel
retargeting with ``--model-class hybrid`` on 0.19+, renamed keys, ``_extra_state``), loads, and writes DST
atomically. A break no known move covers fails naming both releases and the first differing key. DST must
be new (or an empty directory); nothing is ever replaced.

The ``ckpt_compat`` probes verify the result: a cell that fails as written and loads after this
migration is ``loads_after_migrate`` in the checkpoint table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

__all__ = ["HELP", "add_arguments", "run"]

HELP = "rewrite a torch_dist checkpoint written under one megatron-core release so another release loads it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, metavar="SRC", help="the checkpoint to migrate (left untouched)")
    parser.add_argument("dst", type=Path, metavar="DST", help="where the migrated checkpoint goes (must be new)")
    parser.add_argument("--to", required=True, metavar="RELEASE", dest="to_release",
                        help="the megatron-core release that must load it (e.g. 0.19.2)")
    parser.add_argument("--model-class", choices=("gpt", "hybrid"),
                        help="the model class to migrate to (default: the one that wrote it, where RELEASE has it)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a custom-code checkpoint's config classes to run (see SECURITY.md)")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR",
                        help="cache root for prepared releases (default: $MCORE_COMPAT_CACHE or ~/.cache/mcore-compat)")


def _argv(args: argparse.Namespace) -> list[str]:
    out = [str(args.src), str(args.dst), "--to", args.to_release]
    if args.model_class:
        out += ["--model-class", args.model_class]
    if args.trust_remote_code:
        out.append("--trust-remote-code")
    return out


def run(args: argparse.Namespace) -> int:
    from packaging.version import Version

    from bridge import compat
    from bridge.checkpoint.atomic import AtomicDirectory
    from bridge.errors import BridgeError
    from bridge.megatron_ckpt.layout import locate
    from harness.versions import DYNAMIC_RELEASES

    if args.to_release not in DYNAMIC_RELEASES:
        print(f"mcore-compat migrate-ckpt: error: --to expects a release among {DYNAMIC_RELEASES[0]}.."
              f"{DYNAMIC_RELEASES[-1]}, found {args.to_release!r}", file=sys.stderr)
        return 2
    try:  # what can be checked here costs no release preparation
        locate(args.src)
    except BridgeError as e:
        print(f"mcore-compat migrate-ckpt: error: {e}", file=sys.stderr)
        return 1
    try:
        AtomicDirectory(args.dst, overwrite=False, durable=False).abort()
    except BridgeError as e:
        print(f"mcore-compat migrate-ckpt: error: DST must be a new or empty directory (nothing is ever replaced): "
              f"{e}", file=sys.stderr)
        return 1
    if Version(args.to_release).release == compat.installed_version().release:
        from bridge.megatron_ckpt.migrate import main as migrate_main

        return migrate_main(_argv(args))
    from harness.probes.envs import prepare_revision
    from harness.probes.runner import _child_env

    prepared = prepare_revision(f"pypi:{args.to_release}", cache_dir=args.cache_dir)
    if prepared.error:
        print(f"mcore-compat migrate-ckpt: error: megatron-core {args.to_release} could not be prepared: "
              f"{prepared.error}", file=sys.stderr)
        return 1
    proc = subprocess.run([prepared.python, "-m", "bridge.megatron_ckpt.migrate", *_argv(args)],
                          env=_child_env(prepared), stdin=subprocess.DEVNULL)
    return proc.returncode
