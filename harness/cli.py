"""``mcore-compat``: the command line of the harness.

Each subcommand lives in its own module, registered in :data:`COMMANDS` by dotted path. A
command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; to add one (``convert``, ``export``, ``reshard``, ``run``...), write
the module and add one line here.

Exit codes (:mod:`harness.exitcodes`, which command modules import too): 0 success; 1 the command
ran but found failures (e.g. a revision could not be read, a field never exists); 2 usage errors
(bad arguments, unknown revision, unreachable repository); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

from harness.errors import HarnessError, RevisionError
from harness.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

#: MCore's notices, when its modules are imported, that the optional accelerators (Transformer Engine, Apex) are
#: missing: expected on CPU, and no news to a user of the static commands. ``-v`` shows them.
MCORE_IMPORT_NOTICES = r"(Transformer Engine and Apex are|Apex is) not installed"

COMMANDS: dict[str, str] = {
    "scan": "harness.commands.scan",
    "matrix": "harness.commands.matrix",
    "history": "harness.commands.history",
    "bisect": "harness.commands.bisect",
    "diff": "harness.commands.diff",
    "merge": "harness.commands.merge",
    "reshard": "harness.commands.reshard",
    "convert": "harness.commands.convert",
    "export": "harness.commands.export",
    "import-ckpt": "harness.commands.import_ckpt",
    "export-ckpt": "harness.commands.export_ckpt",
    "migrate-ckpt": "harness.commands.migrate_ckpt",
    "run": "harness.commands.run",
    "sweep": "harness.commands.sweep",
    "revisions": "harness.commands.revisions",
    "check": "harness.commands.check",
}
"""Subcommand name -> module (``HELP``, ``add_arguments(parser)``, ``run(args) -> int``)."""


def _load(name: str) -> ModuleType:
    module = importlib.import_module(COMMANDS[name])
    for attr in ("HELP", "add_arguments", "run"):
        if not hasattr(module, attr):
            raise TypeError(f"command module {COMMANDS[name]} lacks {attr}")
    return module


def _named_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word after the top-level ``-v`` flags), if it is one of
    :data:`COMMANDS`; else None (help, a typo, no command: the full parser answers)."""
    for word in argv:
        if word in ("-v", "--verbose") or (word.startswith("-v") and set(word[1:]) == {"v"}):
            continue
        return word if word in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``only`` one subcommand's (its module alone is imported: ``convert`` need not
    import the scanners, renderers and git helpers the other commands use; the start-up is its cost)."""
    parser = argparse.ArgumentParser(
        prog="mcore-compat",
        description="HF <-> Megatron-Core bridge harness: scan MCore revisions, build the matrix.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if only is None else [only]:
        module = _load(name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_named_command(argv))
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        warnings.filterwarnings("ignore", message=MCORE_IMPORT_NOTICES, category=UserWarning, module=r"megatron\.")
    try:
        return int(args._run(args))
    except RevisionError as exc:
        print(f"mcore-compat {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HarnessError as exc:
        print(f"mcore-compat {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
