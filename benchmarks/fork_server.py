#!/usr/bin/env python
"""Benchmark: one warm process per revision serving several probes by ``fork``, against a fresh
interpreter per probe (what ``mcore-compat sweep`` / ``run`` do today).

Fresh: ``python -m harness.probes.payload TEST --out R.json`` per test, the revision's MCore first on
``PYTHONPATH`` (as :mod:`harness.probes.runner` runs it). Fork server: one interpreter with the same
environment imports torch, transformers, megatron.core, the bridge and the payload modules once, then
``os.fork()`` per test; the child runs the very same ``payload.main([TEST, "--out", ...])`` and exits, the
parent waits with a deadline and kills the child on a hang, so a crash, a hang or a leaked global stays in
its own process (per-probe isolation) while the imports are paid once.

    nice -n 19 .venv/bin/python benchmarks/fork_server.py --revision pypi:0.19.2 --tests import,family:llama,...

Prints JSON (appended to ``benchmarks/RESULTS_run.json`` under ``fork_server`` with ``--record``). Not a
test: numbers depend on the machine and its load (``uptime`` is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import json, os, signal, sys, time
t0 = time.perf_counter()
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("TQDM_DISABLE", "1")
import torch, transformers, megatron.core  # noqa: F401
import bridge  # noqa: F401
from harness.probes import payload, payload_families, payload_features, payload_recipes  # noqa: F401
warm = time.perf_counter() - t0
out_dir, tests, deadline = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3])
report = {"warm_s": round(warm, 2), "probes": []}
for test in tests:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: one probe, then gone (its state never reaches the next probe)
        rc = payload.main([test, "--out", os.path.join(out_dir, test.replace(":", "_") + ".json")])
        os._exit(rc)
    status, killed = None, False
    while status is None:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = code
        elif time.perf_counter() - start > deadline:
            os.kill(pid, signal.SIGKILL); killed = True
            status = os.waitpid(pid, 0)[1]
        else:
            time.sleep(0.05)
    report["probes"].append({"test": test, "seconds": round(time.perf_counter() - start, 2),
                             "exit": os.waitstatus_to_exitcode(status), "killed": killed})
print(json.dumps(report))
"""


def pythonpath(spec: str) -> str:
    from harness.probes.envs import prepare_revision

    prepared = prepare_revision(spec)
    assert not prepared.error, prepared.error
    return os.pathsep.join([*prepared.pythonpath, str(ROOT)])


def fresh(path: str, tests: list[str], out: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": path}
    rows = []
    for test in tests:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "harness.probes.payload", test, "--out",
                               str(out / f"{test.replace(':', '_')}.json")], env=env, capture_output=True, text=True)
        rows.append({"test": test, "seconds": round(time.perf_counter() - start, 2), "exit": proc.returncode})
    return rows


def statuses(out: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["status"] for p in sorted(out.glob("*.json"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--revision", default="pypi:0.19.2")
    ap.add_argument("--tests", default="import,family:llama,family:qwen3,family:gemma,features,recipes")
    ap.add_argument("--deadline", type=float, default=600.0, help="seconds before a forked probe is killed")
    ap.add_argument("--record", type=Path, help="add the result to this JSON file under 'fork_server'")
    args = ap.parse_args()
    tests = args.tests.split(",")
    path = pythonpath(args.revision)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="fork-bench-") as tmp:
        a, b = Path(tmp) / "fresh", Path(tmp) / "fork"
        a.mkdir()
        b.mkdir()
        t = time.perf_counter()
        fresh_rows = fresh(path, tests, a)
        fresh_s = time.perf_counter() - t
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", SERVER, str(b), ",".join(tests), str(args.deadline)],
                              env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True)
        fork_s = time.perf_counter() - t
        assert proc.returncode == 0, proc.stderr[-2000:]
        server = json.loads(proc.stdout.strip().splitlines()[-1])
        result = {"revision": args.revision, "tests": tests, "load_before": load,
                  "load_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
                  "fresh": {"total_s": round(fresh_s, 1), "probes": fresh_rows, "statuses": statuses(a)},
                  "fork_server": {"total_s": round(fork_s, 1), **server, "statuses": statuses(b)}}
    print(json.dumps(result, indent=1))
    if args.record:
        data = json.loads(args.record.read_text()) if args.record.exists() else {}
        data["fork_server"] = result
        args.record.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
