"""The process groups a probe run started, and how they are ended.

Every probe runs in a process group of its own (a fresh interpreter started in a new session, or a
child a fork server forked into a new group), and so does every fork server; their leaders' pids are
registered here while they run, so that a timeout ends a probe with everything it started, and an
interrupted sweep (Ctrl-C) ends them all (:func:`kill_registered`).
"""

from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["GRACE_S", "kill_group", "kill_registered", "register", "unregister"]

GRACE_S = 1.0
"""Seconds between SIGTERM and SIGKILL."""

_ACTIVE: set[int] = set()
_LOCK = threading.Lock()


def kill_group(pgid: int, grace: float = GRACE_S) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if sig == signal.SIGTERM:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    os.killpg(pgid, 0)
                except (ProcessLookupError, PermissionError):
                    return
                time.sleep(0.05)


def register(pgid: int) -> None:
    with _LOCK:
        _ACTIVE.add(pgid)


def unregister(pgid: int) -> None:
    with _LOCK:
        _ACTIVE.discard(pgid)


def kill_registered(grace: float = 0.2) -> int:
    """Kill every registered group (probes and fork servers still running); returns how many there were."""
    with _LOCK:
        groups = list(_ACTIVE)
    for pgid in groups:
        kill_group(pgid, grace=grace)
    return len(groups)
