"""A warm probe process for one revision: it imports once, then forks a child per probe.

    python -m harness.probes.forkserver --device cpu

:mod:`harness.probes.forkpool` starts it with exactly the environment a fresh probe interpreter gets
(the revision first on ``PYTHONPATH``, one OpenMP thread, ...). It runs :func:`harness.probes.payload.warm_up`
(the catalog, torch, transformers, the bridge package and ``import megatron.core``, warnings recorded),
checks that no thread but its own runs (forking a process with running threads copies their locks
mid-use: a torch op that started its thread pool would make every child a deadlock risk), and then
serves. Each child leads a process group of its own, redirects its output to the probe's log, moves to
the probe's directory and runs ``<module>.main(argv)`` exactly as ``python -m <module> argv`` would
(exit code, traceback on stderr, atexit handlers), so a crash, a hang or any state a probe leaves
behind (process groups, environment, RNG seeds, patched modules) dies with it: the next child forks
from the same untouched server.

Protocol, one JSON object per line. Requests come on stdin; replies go to the original stdout, and
file descriptor 1 is pointed at stderr (the server's log), so that nothing an import prints can garble
a reply.

=========================================================  ========================================
``{"ready": true, "pid", "warm_s", "threads"}``             after the warm-up; then requests are read
``{"ready": false, "error", "warm_s"}``                     the warm-up failed or forking is unsafe;
                                                            the server exits
``{"id", "module", "argv", "cwd", "log", "env"}``          fork a child running ``module.main(argv)`` in
(request)                                                   ``env``
``{"id", "pid"}``                                           the child started (it leads group ``pid``)
``{"id", "exit"}``                                          it ended; ``exit`` as :mod:`subprocess`
                                                            reports it (negative: killed by a signal)
``{"id", "error"}``                                         the fork itself failed
=========================================================  ========================================

End of input: the server kills its children's process groups, reaps them and exits.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from typing import Any, NoReturn, TextIO

__all__ = ["main", "running_threads"]

_POLL_S = 0.05


def running_threads() -> int:
    """Threads of this process as the kernel counts them (native ones included), else as Python does."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _reply(proto: TextIO, message: dict[str, Any]) -> None:
    proto.write(json.dumps(message) + "\n")
    proto.flush()


def _exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` gives an interpreter."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _reseed() -> None:
    """Seed torch's and numpy's global generators from the OS, as a fresh interpreter does (Python's
    ``random`` reseeds itself after a fork): children never share the server's random sequence."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _child(request: dict[str, Any], proto_fd: int) -> NoReturn:
    code = 1
    try:
        os.setpgid(0, 0)
        os.close(proto_fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.chdir(request["cwd"])
        os.environ.clear()  # exactly the environment a fresh interpreter would have been given now
        os.environ.update(request["env"])
        _reseed()
        code = _exit_code(importlib.import_module(request["module"]).main(list(request["argv"])))
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # noqa: BLE001 - what an uncaught exception does to an interpreter
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()  # an interpreter runs them at exit; os._exit does not
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)  # as an interpreter's exit status: sys.exit(-1) is 255


def _fork(request: dict[str, Any], proto: TextIO, children: dict[int, Any]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as exc:
        _reply(proto, {"id": request["id"], "error": f"fork failed: {exc}"})
        return
    if pid == 0:
        _child(request, proto.fileno())
    try:
        os.setpgid(pid, pid)  # the child does it too: whichever runs first, the group exists before it is named
    except OSError:
        pass  # the child already leads its group (or has already exited)
    children[pid] = request["id"]
    _reply(proto, {"id": request["id"], "pid": pid})


def _reap(proto: TextIO, children: dict[int, Any], *, block: bool = False) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        if pid in children:
            _reply(proto, {"id": children.pop(pid), "exit": os.waitstatus_to_exitcode(status)})


def serve(proto: TextIO) -> int:
    """Fork a child per request until stdin ends (see the module docstring)."""
    children: dict[int, Any] = {}
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], _POLL_S if children else None)
        if readable:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    _fork(json.loads(line), proto, children)
        _reap(proto, children)
    for pid in list(children):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _reap(proto, children, block=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.probes.forkserver", description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args(argv)
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    start = time.perf_counter()
    try:
        from harness.probes import payload

        payload.warm_up(args.device)
    except BaseException as exc:  # noqa: BLE001 - reported; the runner falls back to fresh interpreters
        traceback.print_exc()
        _reply(proto, {"ready": False, "error": f"{type(exc).__name__}: {exc}".strip(),
                       "warm_s": round(time.perf_counter() - start, 3)})
        return 1
    warm_s = round(time.perf_counter() - start, 3)
    threads = running_threads()
    if threads != 1:
        _reply(proto, {"ready": False, "warm_s": warm_s, "threads": threads,
                       "error": f"{threads} threads run after the imports; forking would copy their locks mid-use"})
        return 1
    _reply(proto, {"ready": True, "pid": os.getpid(), "warm_s": warm_s, "threads": threads})
    return serve(proto)


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # no teardown of torch & co: seconds of finalisers, and nothing left to save
