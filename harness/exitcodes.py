"""Exit codes of ``mcore-compat`` and its subcommands (one definition, imported by :mod:`harness.cli` and the commands).

=====================  ==========================================================================
``EXIT_OK``            0: success
``EXIT_FAILURE``       1: the command ran but found failures (a revision could not be read, a field
                       never exists, a probe failed)
``EXIT_USAGE``         2: usage errors (bad arguments, unknown revision, unreachable repository)
``EXIT_INTERRUPTED``   130: interrupted (Ctrl-C); what finished is kept
=====================  ==========================================================================
"""

from __future__ import annotations

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
