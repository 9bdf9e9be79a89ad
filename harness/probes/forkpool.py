"""Warm fork servers for the probe runner: one per revision and device, started on its first probe.

A probe in a fresh interpreter spends most of its time importing torch, transformers and
megatron.core. A fork server (:mod:`harness.probes.forkserver`) pays that once per revision and forks
a child per probe; the child runs the same payload, in a process group of its own, so crashes, hangs
and leaked state stay per probe. :func:`launch_mode` says which way a probe starts:

=============================  ===================================================================
``fresh``                       asked for (``launch="fresh"`` / ``$MCORE_COMPAT_PROBE_LAUNCH=fresh``
                                / ``--launch fresh``), or fork is unsafe: a multi-process test
                                (``tp2``, ``pp2`` spawn their own workers), ``--device cuda`` (a
                                server forking after CUDA is initialised is not verified), or a
                                system without ``fork`` or other than Linux
``fork`` (the default)          everything else; when the revision's server cannot warm up
                                (megatron.core does not import, threads run after the imports),
                                the runner falls back to ``fresh`` for that revision, and the fresh
                                interpreters judge the failure as they always have
=============================  ===================================================================

A server whose warm-up runs past the probe's limit is killed, that probe is a ``timeout``, and the
revision's later probes run fresh. Servers end with :func:`close_servers` (the sweep calls it per
revision once its probes are done, and at the end), and at interpreter exit.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.errors import ProbeError
from harness.probes import procgroups

__all__ = ["LAUNCHES", "LAUNCH_ENV", "ForkServer", "ServerGone", "WarmUp", "close_servers", "launch_mode",
           "warm_server"]

log = logging.getLogger("harness.probes.forkpool")

LAUNCH_ENV = "MCORE_COMPAT_PROBE_LAUNCH"
LAUNCHES = ("fork", "fresh")
SERVER_MODULE = "harness.probes.forkserver"
_START_WAIT_S = 120.0
"""How long a request waits for the server to report its child's pid (a fork is milliseconds; a loaded box)."""


class ServerGone(ProbeError):
    """The fork server could not start the probe (it exited, or the fork failed); the runner starts it fresh."""


def launch_mode(requested: str | None, *, multiprocess: bool, device: str) -> tuple[str, str]:
    """``(mode, why)``: how a probe starts (see the module docstring); ``why`` is empty for the default fork."""
    mode = requested or os.environ.get(LAUNCH_ENV) or "fork"
    if mode not in LAUNCHES:
        raise ProbeError(f"probe launch {mode!r}: expected one of {', '.join(LAUNCHES)} "
                         f"(from --launch or ${LAUNCH_ENV})")
    if mode == "fresh":
        return mode, "fresh interpreters asked for"
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return "fresh", f"no fork server on {sys.platform}"
    if multiprocess:
        return "fresh", "a multi-process test starts its own workers"
    if device != "cpu":
        return "fresh", f"no fork server for --device {device} (forking around CUDA is not verified)"
    return "fork", ""


@dataclass
class _Request:
    number: int
    pid: int | None = None
    exit: int | None = None
    error: str | None = None
    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class WarmUp:
    """How a revision's server warm-up went: ``server`` when ready; else why not, and whether it timed out."""

    server: ForkServer | None
    seconds: float
    reason: str = ""
    timed_out: bool = False
    log_tail: str = ""
    threads: int = 0
    """Threads the server ran after its imports (1: safe to fork; reported by a server that got that far)."""
    killed: bool = False
    """Killed from outside (SIGTERM / SIGKILL: an interrupted sweep) before it was ready: start nothing new."""


class ForkServer:
    """One running :mod:`harness.probes.forkserver` process and the probes it has started."""

    def __init__(self, label: str, python: str, env: dict[str, str], device: str) -> None:
        self.label = label
        self._dir = Path(tempfile.mkdtemp(prefix="mcore-forkserver-"))
        self.log_path = self._dir / "server.log"
        try:
            with open(self.log_path, "wb") as log_file:
                self._proc = subprocess.Popen([python, "-m", SERVER_MODULE, "--device", device],
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                                              cwd=self._dir, env=env, start_new_session=True)
        except OSError:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        procgroups.register(self._proc.pid)
        self._stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._requests: dict[int, _Request] = {}
        self._ready: dict[str, Any] | None = None
        self._ready_event = threading.Event()
        self.dead = False
        threading.Thread(target=self._read, name=f"forkserver-{self._proc.pid}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "ready" in message:
                self._ready = message
                self._ready_event.set()
                continue
            with self._lock:  # one lock with start(): a child is either reported in time or killed
                req = self._requests.get(message.get("id"))
                if req is not None and "pid" in message:
                    req.pid = int(message["pid"])
            if req is None:
                if "pid" in message:  # an abandoned request: its child must not run beside the fresh one
                    procgroups.kill_group(int(message["pid"]), grace=0.2)
                continue
            if req.pid is not None and not req.started.is_set():
                procgroups.register(req.pid)
                req.started.set()
            elif "error" in message:
                req.error = str(message["error"])
                req.started.set()
                req.done.set()
            elif "exit" in message:
                req.exit = int(message["exit"])
                req.done.set()
        self.dead = True
        self._ready_event.set()
        with self._lock:
            for req in self._requests.values():
                req.started.set()
                req.done.set()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, limit: float) -> WarmUp:
        """Wait for the warm-up; a server that is not ready (failed, unsafe, too slow) is closed."""
        start = time.perf_counter()
        self._ready_event.wait(limit)
        seconds = time.perf_counter() - start
        ready = self._ready
        threads = int((ready or {}).get("threads") or 0)
        if ready is not None and ready.get("ready") and not self.dead:
            return WarmUp(self, float(ready.get("warm_s", seconds)), threads=threads)
        timed_out = ready is None and not self.dead
        tail = self.log_tail()
        self.close(grace=0.0 if timed_out else 5.0)
        code = self._proc.returncode
        killed = ready is None and code is not None and -code in (signal.SIGTERM, signal.SIGKILL)
        reason = (f"the warm-up ran past {limit:g}s" if timed_out else
                  str((ready or {}).get("error") or f"the server exited with code {code} while importing"))
        return WarmUp(None, seconds, reason, timed_out, tail, threads, killed)

    def start(self, module: str, argv: list[str], cwd: Path, log_path: Path, env: dict[str, str]) -> _Request:
        """Fork a child running ``module.main(argv)`` with ``env`` as its whole environment; returns once it
        runs. Raises :class:`ServerGone`."""
        with self._lock:
            req = _Request(next(self._ids))
            self._requests[req.number] = req
            line = json.dumps({"id": req.number, "module": module, "argv": argv, "cwd": str(cwd), "log": str(log_path),
                               "env": env})
            try:
                self._stdin.write(line.encode() + b"\n")
                self._stdin.flush()
            except (OSError, ValueError) as exc:
                raise ServerGone(f"the fork server of {self.label} is gone ({exc})") from exc
        req.started.wait(_START_WAIT_S)
        with self._lock:
            if req.pid is None:  # a child reported after this is killed at once (the probe runs fresh instead)
                self._requests.pop(req.number, None)
                raise ServerGone(req.error or f"the fork server of {self.label} did not start the probe "
                                              f"within {_START_WAIT_S:g}s")
        return req

    def finished(self, req: _Request) -> None:
        with self._lock:
            self._requests.pop(req.number, None)
        if req.pid is not None:
            procgroups.unregister(req.pid)

    def close(self, grace: float = 5.0) -> None:
        """End of input: the server kills its children and exits; its group is killed after ``grace`` seconds
        if it has not (at once for a server stuck in its imports)."""
        try:
            self._stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=max(grace, 0.01))
        except subprocess.TimeoutExpired:
            procgroups.kill_group(self._proc.pid)
            self._proc.wait()
        procgroups.unregister(self._proc.pid)
        shutil.rmtree(self._dir, ignore_errors=True)


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ForkServer | None = None
    failed: str | None = None


_SLOTS: dict[tuple[Any, ...], _Slot] = {}
_SLOTS_LOCK = threading.Lock()


def warm_server(label: str, python: str, env: dict[str, str], device: str, *, limit: float,
                revision_env: dict[str, str] | None = None) -> WarmUp:
    """The ready server for this revision (``label``: its spec), started on first use with ``env`` (the
    environment a fresh probe interpreter gets). When it cannot be had, ``server`` is None: the caller
    runs the probe fresh, except after a warm-up that timed out (that probe is a timeout; later ones
    run fresh).

    One server per ``label``, ``python``, ``device`` and ``revision_env`` (what the revision adds to the
    environment: its ``PYTHONPATH``); the rest of the environment may change between probes (each
    request hands the child its own, :meth:`ForkServer.start`), but what the imports read stays what
    the server started with."""
    key = (label, python, device, tuple(sorted((revision_env or {}).items())))
    with _SLOTS_LOCK:
        slot = _SLOTS.setdefault(key, _Slot())
    with slot.lock:
        if slot.server is not None and not slot.server.dead:
            return WarmUp(slot.server, 0.0)
        if slot.failed is not None:
            return WarmUp(None, 0.0, slot.failed)
        if slot.server is not None:  # it died since: no second try, later probes run fresh
            slot.failed = f"the fork server exited (see {slot.server.label}'s earlier probe)"
            slot.server.close()
            slot.server = None
            return WarmUp(None, 0.0, slot.failed)
        try:
            warm = ForkServer(label, python, env, device).wait_ready(limit)
        except OSError as exc:  # the interpreter cannot start: the fresh path says so in the probe's verdict
            warm = WarmUp(None, 0.0, f"could not start {python}: {exc}")
        if warm.server is None:
            slot.failed = warm.reason
            log.warning("%s: no fork server (%s); its probes run in fresh interpreters%s", label, warm.reason,
                        f"\n{warm.log_tail}" if warm.log_tail and not warm.timed_out else "")
        else:
            slot.server = warm.server
            log.info("%s: fork server ready in %.1fs (imports, once for the revision)", label, warm.seconds)
        return warm


def close_servers(label: str | None = None) -> int:
    """Close the servers of revision ``label`` (None: all) and forget them; returns how many ran."""
    with _SLOTS_LOCK:
        keys = [k for k in _SLOTS if label is None or k[0] == label]
        slots = [_SLOTS.pop(k) for k in keys]
    closed = 0
    for slot in slots:
        with slot.lock:
            if slot.server is not None:
                slot.server.close()
                slot.server = None
                closed += 1
    return closed


atexit.register(close_servers)
