#!/usr/bin/env python
"""Benchmark: ``mcore-compat run --suite all`` against an upstream commit, and where its time goes.

The upstream repository is built locally from real PyPI archives (:mod:`harness.release_repo`):
``core_v0.16.1`` then ``main`` = megatron-core 0.19.2 (the newest release, standing in for upstream
HEAD). A throwaway superproject pins the project's own submodule commit (upstream's core_v0.16.1,
absent from the local repository, so the baseline is the release pypi:0.16.1, as on a fresh clone).

The run uses a scratch cache whose ``pypi/`` archives and prepared ``envs/`` are the real cache's (a
user's second run; preparing an env is measured by ``prepare_envs.py``), and an empty probe-result
cache, so every probe runs. Per probe, the seconds come from the run's ``-v`` log, and so do each
revision's preparation and fork-server warm-up (the imports, once per revision); the rest of the wall
time is the static suite, the checkout, the harness's own imports and the reports. The import floor
of a probe is measured separately (a bare ``import torch, transformers, megatron.core`` with the
revision's ``PYTHONPATH``, and the same plus ``bridge`` and ``harness.probes.payload``).

``--launch`` (repeatable; default both, fresh first) measures each way probes start in one command:
``fork`` (a warm server per revision forks each probe, the default of ``mcore-compat run``) and
``fresh`` (a new interpreter per probe, ``--launch fresh``).

    .venv/bin/python benchmarks/run_suite.py --jobs 1            # both launches, ~5 + ~12 min on a quiet box
    .venv/bin/python benchmarks/run_suite.py --launch fork       # the fork server only

Writes ``benchmarks/RESULTS_run.json``; the prose is in ``benchmarks/RESULTS_run.md``. Not a test:
numbers depend on the machine and its load (``uptime`` is recorded before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.cache import default_cache_dir
from harness.release_repo import release_commits, write_history
from harness.versions import SUBMODULE_PATH, pinned_submodule_sha

ROOT = Path(__file__).resolve().parent.parent
PROBE_LINE = re.compile(r"INFO harness\.probes\.sweep: (\S+) (\S+) \((\w+)\): (\w+) in ([\d.]+)s")
WARM_LINE = re.compile(r"INFO harness\.probes\.forkpool: (\S+): fork server ready in ([\d.]+)s")
NO_SERVER_LINE = re.compile(r"WARNING harness\.probes\.forkpool: (\S+): no fork server \((.*)\); ")
PREPARE_LINE = re.compile(r"INFO harness\.probes\.envs: (\S+): prepared \((.*)\) in ([\d.]+)s")
LAUNCHES = ("fresh", "fork")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b.invalid", "-c", "protocol.file.allow=always",
                           *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def build_upstream(root: Path) -> Path:
    return write_history(root / "upstream", release_commits(["0.16.1", "0.19.2"], default_cache_dir()))


def superproject(root: Path, upstream: Path) -> Path:
    pin = pinned_submodule_sha()
    assert pin, "the project's 3rdparty/Megatron-LM gitlink is needed"
    project = root / "super"
    project.mkdir()
    _git(project, "init", "-q", "-b", "main")
    (project / ".gitmodules").write_text(f'[submodule "{SUBMODULE_PATH}"]\n\tpath = {SUBMODULE_PATH}\n'
                                         f"\turl = file://{upstream}\n")
    (project / SUBMODULE_PATH).mkdir(parents=True)
    _git(project, "add", ".gitmodules")
    _git(project, "update-index", "--add", "--cacheinfo", f"160000,{pin},{SUBMODULE_PATH}")
    _git(project, "commit", "-q", "-m", "pin megatron")
    return project


def scratch_cache(root: Path) -> Path:
    cache = root / "cache"
    cache.mkdir()
    real = default_cache_dir()
    for shared in ("pypi", "envs"):
        (cache / shared).symlink_to(real / shared)
    return cache


def import_floor(pythonpath: str, modules: str, repeats: int = 3) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([pythonpath, str(ROOT)])}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {modules}"], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def breakdown(wall: float, probes: list[dict], stderr: str) -> dict:
    """Where the wall time went (seconds): per revision, preparation, fork-server warm-up and probes; the rest."""
    revisions: dict[str, dict] = {}
    for p in probes:
        rev = revisions.setdefault(p["revision"], {"probes": 0, "probe_s": 0.0})
        rev["probes"] += 1
        rev["probe_s"] = round(rev["probe_s"] + p["seconds"], 1)
    for m in PREPARE_LINE.finditer(stderr):
        revisions.setdefault(m[1], {"probes": 0, "probe_s": 0.0})["prepare_s"] = float(m[3])
    for m in WARM_LINE.finditer(stderr):
        revisions.setdefault(m[1], {"probes": 0, "probe_s": 0.0})["warmup_s"] = float(m[2])
    for m in NO_SERVER_LINE.finditer(stderr):
        revisions.setdefault(m[1], {"probes": 0, "probe_s": 0.0})["no_fork_server"] = m[2]
    for rev in revisions.values():
        seconds = sorted(p["seconds"] for p in probes if rev is revisions.get(p["revision"]))
        if seconds:
            rev["median_probe_s"] = round(statistics.median(seconds), 2)
    counted = sum(r.get("probe_s", 0) + r.get("prepare_s", 0) + r.get("warmup_s", 0) for r in revisions.values())
    return {"revisions": revisions, "probes_s": round(sum(p["seconds"] for p in probes), 1),
            "warmup_s": round(sum(r.get("warmup_s", 0) for r in revisions.values()), 1),
            "prepare_s": round(sum(r.get("prepare_s", 0) for r in revisions.values()), 1),
            "rest_s": round(wall - counted, 1),
            "rest_is": "static suite, checkout, the harness's own imports (catalog: torch, transformers, bridge), reports"}


def one_run(jobs: int, tmp: Path, tests: str | None = None, launch: str = "fork") -> dict:
    work = tmp / f"jobs{jobs}-{launch}"
    work.mkdir()
    upstream = build_upstream(work)
    project = superproject(work, upstream)
    cache = scratch_cache(work)
    load_before = uptime()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "-v", "run", "--mcore-repo", f"file://{upstream}",
                           "--mcore-commit", "main", "--suite", "all", "--project", str(project), "--out",
                           str(work / "out"), "--no-progress", "--jobs", str(jobs), "--cache-dir", str(cache),
                           "--launch", launch, *(["--tests", tests] if tests else [])],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    probes = [{"revision": m[1], "test": m[2], "status": m[4], "seconds": float(m[5])}
              for m in PROBE_LINE.finditer(proc.stderr)]
    run_json = json.loads((work / "out" / "run.json").read_text()) if (work / "out" / "run.json").exists() else {}
    matrix = json.loads((work / "out" / "matrix.json").read_text()) if (work / "out" / "matrix.json").exists() else {}
    timing = {r["spec"]: ((r.get("dynamic") or {}).get("cpu") or {}).get("timing") for r in matrix.get("revisions", [])}
    return {"jobs": jobs, "launch": launch, "tests": tests or "default",
            "exit_code": proc.returncode, "wall_s": round(wall, 1), "load_before": load_before,
            "load_after": uptime(), "probes": probes, "probe_s_total": round(sum(p["seconds"] for p in probes), 1),
            "breakdown": breakdown(wall, probes, proc.stderr),
            "revision_timing": timing, "run_json": run_json, "stderr_tail": proc.stderr[-3000:],
            "stdout_tail": proc.stdout[-3000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, action="append", help="probe parallelism to measure (repeatable)")
    parser.add_argument("--tests", metavar="A,B", help="only these probes (default: the run's own selection)")
    parser.add_argument("--launch", choices=LAUNCHES, action="append",
                        help="how probes start (repeatable; default: fresh, then fork)")
    parser.add_argument("--no-import-floor", action="store_true", help="skip the import-floor measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_run.json")
    args = parser.parse_args()
    results: dict = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        for jobs in args.jobs or [1]:
            for launch in args.launch or LAUNCHES:
                results["runs"].append(one_run(jobs, Path(tmp), args.tests, launch))
                print(json.dumps({k: v for k, v in results["runs"][-1].items()
                                  if k not in ("probes", "stderr_tail", "stdout_tail", "run_json")}, indent=1),
                      flush=True)
        env_0192 = next((p for p in (default_cache_dir() / "envs").glob("0.19.2-*")), None)
        if env_0192 is not None and not args.no_import_floor:
            extra = default_cache_dir() / "envs" / "extra-triton"
            path = os.pathsep.join([str(env_0192), str(extra)])
            results["import_floor_s"] = {
                "torch+transformers+megatron.core (0.19.2)": round(import_floor(path, "torch, transformers, megatron.core"), 2),
                "+ bridge + harness.probes.payload": round(import_floor(
                    path, "torch, transformers, megatron.core, bridge, harness.probes.payload"), 2),
            }
    results["load_end"] = uptime()
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results.get("import_floor_s"), indent=1))


if __name__ == "__main__":
    main()
