"""Run one probe test in a subprocess under a prepared revision, and judge what came back.

The child is ``python -m harness.probes.payload <test> --out RESULT.json --device D`` in its own
process group (so a timeout kills everything it started), with the revision first on ``PYTHONPATH``
and ``OMP_NUM_THREADS=1``: by default a child forked from the revision's warm fork server, which has
imported torch, transformers, the bridge and megatron.core once in that very environment
(:mod:`harness.probes.forkpool`), else (``launch="fresh"``, a multi-process test, a server that cannot
warm up) a fresh interpreter. Both leave the same files and exit codes. The payload writes RESULT.json
and exits 0 when it could judge the test; anything else is judged here:

=============  ==================================================================================
``timeout``    it ran past its limit; the whole process group was killed
``error``      nonzero exit, a signal, or a missing / unreadable RESULT.json; ``details`` says why
               (``import failed: ModuleNotFoundError: No module named 'pkg_resources'``,
               ``crashed: signal SIGSEGV``) and ``log_tail`` holds the end of its output
=============  ==================================================================================
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ProbeError
from harness.probes import procgroups
from harness.probes.forkpool import ForkServer, ServerGone, launch_mode, warm_server
from harness.probes.prepared import PreparedRevision

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "PAYLOAD_MODULE",
    "RESULT_STATUSES",
    "STATUSES",
    "ProbeResult",
    "exception_reason",
    "kill_active_probes",
    "run_probe",
    "test_name",
    "test_timeout",
]

log = logging.getLogger("harness.probes.runner")

PAYLOAD_MODULE = "harness.probes.payload"
RESULT_STATUSES = ("passed", "failed", "skipped")
"""What the payload itself may report."""
STATUSES = (*RESULT_STATUSES, "error", "timeout")
DEFAULT_TIMEOUT_S = 900.0
_TAIL_LINES, _TAIL_CHARS = 40, 4000
_REAP_WAIT_S = 10.0
_META_KEYS = ("mcore_version", "python", "torch", "transformers", "device", "duration_s", "notes")


@dataclass(frozen=True)
class ProbeResult:
    """One test at one revision on one device.

    ``rows`` and ``warnings`` follow the payload's RESULT.json; ``meta`` holds the payload's versions
    and device plus what the runner knows of the revision (``outside_python_range``, ``identity``,
    ``revision_notes``, ``returncode``). ``cached`` is True when the result came from the cache.
    """

    spec: str
    test: str
    status: str
    rows: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    details: str = ""
    log_tail: str = ""
    duration_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ProbeError(f"probe {self.test} at {self.spec}: expected a status in {STATUSES}, "
                             f"found {self.status!r}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], *, cached: bool = False) -> ProbeResult:
        known = {k: data[k] for k in ("spec", "test", "status", "rows", "warnings", "details", "log_tail",
                                       "duration_s", "meta") if k in data}
        return cls(**known, cached=cached)


def test_name(test: Any) -> str:
    """The name of a catalog ``ProbeTest`` or of a test given as a string."""
    return test if isinstance(test, str) else str(test.name)


def _catalog_test(test: Any) -> Any:
    """The catalog's ``ProbeTest`` for ``test`` (a ``ProbeTest`` is returned as is), or None when the catalog
    cannot be imported here or does not know the name."""
    if not isinstance(test, str):
        return test
    try:
        from harness.probes.catalog import test_by_name
    except ImportError:
        return None
    try:
        return test_by_name(test)
    except (KeyError, LookupError, ValueError, ProbeError):
        return None


def test_timeout(test: Any) -> float:
    """The test's own limit: from the ``ProbeTest``, else the catalog (when it knows the name), else the default."""
    found = _catalog_test(test)
    return float(found.timeout_s) if found is not None else DEFAULT_TIMEOUT_S


def _multiprocess(test: Any) -> bool:
    """Whether the test starts worker processes of its own (``tp2``, ``pp2``): those never fork from a server."""
    found = _catalog_test(test)
    return bool(getattr(found, "multiprocess", False))


def kill_active_probes() -> int:
    """Kill the process groups of every probe and fork server still running (after Ctrl-C); returns how many."""
    return procgroups.kill_registered(grace=0.2)


# --- judging what came back ------------------------------------------------------------------------

_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)|KeyboardInterrupt)(?::\s?(.*))?$")
_FILE_LINE = re.compile(r'^\s*File "([^"]+)", line (\d+)')
_PAYLOAD_PREFIX = "payload: "
_NO_IMPORT = "megatron.core does not import:"
_IMPORT_ERRORS = ("ImportError", "ModuleNotFoundError", "SyntaxError", "IndentationError", "TabError")


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-_TAIL_LINES:]
    return "\n".join(lines)[-_TAIL_CHARS:]


def _short_path(path: str) -> str:
    parts = Path(path).parts
    return "/".join(parts[parts.index("megatron"):]) if "megatron" in parts else Path(path).name


def exception_reason(log_text: str) -> str | None:
    """``import failed: <Exc>: <msg> (at file:line)`` or ``<Exc>: <msg> (at file:line)`` from a traceback."""
    lines = log_text.rstrip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        match = _EXC_LINE.match(lines[i].strip())
        if not match:
            continue
        exc_type = match.group(1).rsplit(".", 1)[-1]
        text = f"{match.group(1)}: {match.group(2)}" if match.group(2) else match.group(1)
        where = next((m for m in (_FILE_LINE.match(ln) for ln in reversed(lines[:i])) if m), None)
        if where:
            text += f" (at {_short_path(where.group(1))}:{where.group(2)})"
        frames = "\n".join(lines[:i])
        if exc_type in _IMPORT_ERRORS or "importlib._bootstrap" in frames:
            return f"import failed: {text}"
        return text
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _payload_reason(log_text: str) -> str | None:
    """The payload's own last word (``payload: <reason>`` on stderr), if it said one."""
    said = [ln[len(_PAYLOAD_PREFIX):].strip() for ln in log_text.splitlines() if ln.startswith(_PAYLOAD_PREFIX)]
    if not said:
        return None
    reason = said[-1]
    if reason.startswith(_NO_IMPORT):
        return "import failed: " + reason[len(_NO_IMPORT):].strip()
    return reason


def _exit_reason(returncode: int, log_text: str) -> str:
    if returncode < 0:
        reason = f"crashed: signal {_signal_name(-returncode)}"
        fatal = next((ln.strip() for ln in log_text.splitlines() if ln.startswith("Fatal Python error")), None)
        return f"{reason} ({fatal})" if fatal else reason
    exc = _payload_reason(log_text) or exception_reason(log_text)
    return exc if exc else f"exited with code {returncode} without a result"


def _read_result(path: Path) -> dict[str, Any]:
    """The payload's RESULT.json, checked. Raises ProbeError saying what is wrong."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ProbeError("no RESULT.json was written") from None
    except (OSError, ValueError) as exc:
        raise ProbeError(f"RESULT.json is unreadable: {exc}") from exc
    if not isinstance(data, dict) or data.get("status") not in RESULT_STATUSES:
        found = data.get("status") if isinstance(data, dict) else type(data).__name__
        raise ProbeError(f"RESULT.json: expected status in {RESULT_STATUSES}, found {found!r}")
    if not isinstance(data.get("rows", {}), dict) or not isinstance(data.get("warnings", []), list):
        raise ProbeError("RESULT.json: expected 'rows' to be an object and 'warnings' a list")
    return data


def _summary(data: dict[str, Any]) -> str:
    if data.get("details"):
        return str(data["details"])
    rows = data.get("rows") or {}
    bad = [f"{name}: {r.get('details', '')}".rstrip(": ") for name, r in rows.items()
           if isinstance(r, dict) and r.get("status") == "failed"]
    counts = {s: sum(1 for r in rows.values() if isinstance(r, dict) and r.get("status") == s) for s in RESULT_STATUSES}
    head = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no rows"
    return head + ("; " + "; ".join(bad) if bad else "")


# --- running ---------------------------------------------------------------------------------------

def _child_env(prepared: PreparedRevision) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(prepared.env)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    # megatron.core.package_info runs `git rev-parse HEAD` in the working directory at import and
    # appends it to __version__ ("0.19.2+<our commit>"): the probe reports the release it tested
    env["NO_VCS_VERSION"] = "1"
    return env


def _base_meta(prepared: PreparedRevision, device: str) -> dict[str, Any]:
    return {"device": device, "python": prepared.python_version, "mcore_version": prepared.version,
            "identity": prepared.identity, "outside_python_range": prepared.outside_python_range,
            "requires_python": prepared.requires_python, "revision_notes": list(prepared.notes),
            "method": prepared.method}


class _ServerLost(ProbeError):
    """The fork server exited while its child ran: the child's exit status is unknown."""


def _run_fresh(prepared: PreparedRevision, cmd: list[str], workdir: Path, log_path: Path, limit: float) -> int | None:
    """Run ``cmd`` in a new session; its exit code, or None when it ran past ``limit`` (its group is killed).
    Raises OSError when it cannot start."""
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir, env=_child_env(prepared), start_new_session=True)
        procgroups.register(proc.pid)
        try:
            return proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            return None
        except BaseException:
            procgroups.kill_group(proc.pid, grace=0.2)
            proc.wait()
            raise
        finally:
            procgroups.kill_group(proc.pid)  # stragglers the child left behind (or the whole group on timeout)
            proc.wait()
            procgroups.unregister(proc.pid)


def _run_forked(server: ForkServer, module: str, argv: list[str], workdir: Path, log_path: Path,
                env: dict[str, str], limit: float) -> int | None:
    """:func:`_run_fresh` through ``server``: the child is forked, not started. Raises :class:`ServerGone`
    when the server cannot start it, :class:`_ServerLost` when the server dies while it runs."""
    req = server.start(module, argv, workdir, log_path, env)
    assert req.pid is not None
    try:
        if not req.done.wait(limit):
            procgroups.kill_group(req.pid)
            req.done.wait(_REAP_WAIT_S)
            return None
        procgroups.kill_group(req.pid)  # stragglers the child left behind, as for a fresh interpreter
        if req.exit is None:
            raise _ServerLost(f"the fork server of {server.label} exited while the probe ran (its exit status "
                              "is unknown; the probe's process group was killed)")
        return req.exit
    except BaseException:
        procgroups.kill_group(req.pid, grace=0.2)
        raise
    finally:
        server.finished(req)


def run_probe(prepared: PreparedRevision, test: Any, *, device: str = "cpu", timeout_s: float | None = None,
              workdir: Path | None = None, launch: str | None = None, payload: str = PAYLOAD_MODULE
              ) -> ProbeResult:
    """Run ``test`` (a catalog ``ProbeTest`` or its name) at ``prepared`` and judge the outcome.

    ``timeout_s`` overrides the test's own limit. ``workdir``: keep the probe's ``RESULT.json`` and
    ``probe.log`` in a fresh sub-directory of it (None: a temporary directory, removed afterwards).
    ``launch``: ``"fork"`` or ``"fresh"`` (None: ``$MCORE_COMPAT_PROBE_LAUNCH``, else fork; see
    :func:`harness.probes.forkpool.launch_mode`); ``meta["launch"]`` says which ran. ``payload``: the module
    whose ``main(argv)`` judges the test (``python -m`` it, or called in the forked child).
    Never raises for the revision's failures (they become ``error`` / ``timeout`` results); a
    KeyboardInterrupt kills the child's process group and propagates.
    """
    name = test_name(test)
    limit = float(timeout_s) if timeout_s is not None else test_timeout(test)
    meta = _base_meta(prepared, device)
    if prepared.error:
        return ProbeResult(prepared.spec, name, "error", details=prepared.error, meta=meta)
    mode, why = launch_mode(launch, multiprocess=_multiprocess(test), device=device)
    server: ForkServer | None = None
    if mode == "fork":
        warm = warm_server(prepared.spec, prepared.python, _child_env(prepared), device, limit=limit,
                           revision_env=prepared.env)
        if warm.timed_out:
            meta.update(returncode=None, launch="fork server")
            return ProbeResult(prepared.spec, name, "timeout", log_tail=_tail(warm.log_tail), duration_s=warm.seconds,
                               meta=meta, details=f"timed out after {limit:g}s (process group killed) in the "
                                                  "revision's fork server, importing megatron.core")
        if warm.killed:  # an interrupted sweep killed it: start nothing in its place
            meta.update(returncode=None, launch="fork server")
            return ProbeResult(prepared.spec, name, "error", log_tail=_tail(warm.log_tail), duration_s=warm.seconds,
                               meta=meta, details=f"the revision's fork server was killed while importing ({warm.reason})")
        server = warm.server
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mcore-probe-")))
        else:
            workdir.mkdir(parents=True, exist_ok=True)
            workdir = Path(tempfile.mkdtemp(dir=workdir, prefix=f"{name.replace(':', '-')}-"))
        out, log_path = workdir / "RESULT.json", workdir / "probe.log"
        argv = [name, "--out", str(out), "--device", device]
        start = time.perf_counter()
        returncode: int | None = None
        try:
            if server is not None:
                try:
                    returncode = _run_forked(server, payload, argv, workdir, log_path, _child_env(prepared), limit)
                    meta["launch"] = "fork server"
                except ServerGone as exc:
                    log.warning("%s %s: %s; running it in a fresh interpreter", prepared.spec, name, exc)
                    server, start = None, time.perf_counter()
            if server is None:
                cmd = [prepared.python, "-m", payload, *argv]
                try:
                    returncode = _run_fresh(prepared, cmd, workdir, log_path, limit)
                except OSError as exc:
                    return ProbeResult(prepared.spec, name, "error", details=f"could not start {cmd[0]}: {exc}",
                                       meta=meta)
                meta["launch"] = "fresh interpreter" + (f" ({why})" if why else "")
        except _ServerLost as exc:
            return ProbeResult(prepared.spec, name, "error", details=str(exc), duration_s=time.perf_counter() - start,
                               log_tail=_tail(log_path.read_text("utf-8", "replace")) if log_path.exists() else "",
                               meta={**meta, "launch": "fork server"})
        duration = time.perf_counter() - start
        log_text = log_path.read_text("utf-8", "replace") if log_path.exists() else ""
        tail = _tail(log_text)
        meta["returncode"] = returncode
        if returncode is None:
            return ProbeResult(prepared.spec, name, "timeout", log_tail=tail, duration_s=duration, meta=meta,
                               details=f"timed out after {limit:g}s (process group killed)")
        try:
            data = _read_result(out)
        except ProbeError as exc:
            details = _exit_reason(returncode, log_text) if returncode != 0 else f"exited 0 but {exc}"
            return ProbeResult(prepared.spec, name, "error", details=details, log_tail=tail, duration_s=duration,
                               meta=meta)
        meta.update({k: data[k] for k in _META_KEYS if k in data})
        details = _summary(data)
        if returncode != 0:  # the verdict was written atomically before the crash: keep it, say so
            details += f" (then the payload {_exit_reason(returncode, log_text)})"
        return ProbeResult(prepared.spec, name, data["status"], rows=dict(data.get("rows") or {}),
                           warnings=list(data.get("warnings") or []), details=details, log_tail=tail,
                           duration_s=duration, meta=meta)
