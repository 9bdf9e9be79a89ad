"""A probe payload that misbehaves on purpose, for the runner's launch tests (test_forkpool.py).

    python -m tests.harness.probes.misbehaving_payload TEST --out RESULT.json [--device cpu]

Same command line and RESULT.json as :mod:`harness.probes.payload`, so the runner launches and judges it
the same way, in a fresh interpreter or forked from a warm server (``run_probe(..., payload=<this module>)``):

=========  ==============================================================================================
``crash``  SIGSEGV itself; ``exit``: ``os._exit(7)``; ``raise``: an uncaught RuntimeError
``hang``   start a grandchild (its pid in ``grandchild.pid`` of the probe's directory), then sleep forever
``leak``   leave behind all the state a real probe could: an environment variable, torch's seed, a gloo
           process group with MCore's model-parallel groups and the bridge's CPU patches
           (``bridge.runtime.ensure_model_parallel``), an attribute on ``megatron.core``; then pass
``state``  one row per kind of state ``leak`` leaves, passed where none is found, with this process's
           pid, parent pid, torch seed and ``$MCORE_COMPAT_TEST_MARK`` as metrics
=========  ==============================================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LEAKED_ENV = "MCORE_COMPAT_LEAKED_BY_PROBE"
LEAKED_SEED = 1234
LEAKED_ATTRIBUTE = "_leaked_by_probe"
MARK_ENV = "MCORE_COMPAT_TEST_MARK"
"""Reported by ``state``: the environment a probe sees is the runner's at launch, not the server's at start."""


def _write(out: Path, status: str, rows: dict[str, Any]) -> None:
    out.write_text(json.dumps({"test": out.stem, "status": status, "rows": rows, "warnings": []}), encoding="utf-8")


def _leak() -> dict[str, Any]:
    import megatron.core
    import torch

    from bridge.runtime import ensure_model_parallel

    os.environ[LEAKED_ENV] = "1"
    ensure_model_parallel(1, 1)  # gloo group, MCore's groups, bridge.cpu patches; never reset
    torch.manual_seed(LEAKED_SEED)
    setattr(megatron.core, LEAKED_ATTRIBUTE, True)
    return {"leak": {"status": "passed", "details": "left it all behind", "metrics": {}}}


def _row(ok: bool, details: str, **metrics: Any) -> dict[str, Any]:
    return {"status": "passed" if ok else "failed", "details": details, "metrics": metrics}


def _state(out: Path) -> dict[str, Any]:
    import megatron.core
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state

    from bridge import cpu
    from harness.probes.forkserver import running_threads

    seed = torch.initial_seed()
    return {
        "environment": _row(LEAKED_ENV not in os.environ, f"{LEAKED_ENV} in the environment: {LEAKED_ENV in os.environ}"),
        "rng": _row(seed != LEAKED_SEED, f"torch.initial_seed() = {seed}", seed=str(seed)),
        "process_groups": _row(not dist.is_initialized() and not parallel_state.model_parallel_is_initialized(),
                               f"torch.distributed initialised: {dist.is_initialized()}; MCore model parallel: "
                               f"{parallel_state.model_parallel_is_initialized()}"),
        "patches": _row(not cpu.APPLIED, f"bridge.cpu.APPLIED = {cpu.APPLIED}"),
        "modules": _row(not hasattr(megatron.core, LEAKED_ATTRIBUTE), f"megatron.core.{LEAKED_ATTRIBUTE}: "
                        f"{getattr(megatron.core, LEAKED_ATTRIBUTE, None)}"),
        "threads": _row(running_threads() == 1, f"{running_threads()} threads at the start of the body"),
        "process": _row(os.getpgid(0) == os.getpid() and os.getcwd() == str(out.parent),
                        f"leads its group: {os.getpgid(0) == os.getpid()}; cwd: {os.getcwd()}",
                        pid=os.getpid(), parent=os.getppid(), mark=os.environ.get(MARK_ENV, "")),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="misbehaving_payload")
    ap.add_argument("test")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.test == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif args.test == "exit":
        os._exit(7)
    elif args.test == "raise":
        raise RuntimeError("boom on purpose")
    elif args.test == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        Path("grandchild.pid").write_text(str(child.pid))
        while True:
            time.sleep(60)
    elif args.test == "leak":
        _write(args.out, "passed", _leak())
    elif args.test == "state":
        rows = _state(args.out)
        _write(args.out, "failed" if any(r["status"] == "failed" for r in rows.values()) else "passed", rows)
    else:
        print(f"payload: unknown test {args.test!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
