#!/usr/bin/env python
"""Benchmark: preparing a megatron-core release for the dynamic probes, two ways.

1. ``pythonpath`` (what sweeps use): ``pip install --no-deps --ignore-requires-python --target`` of the
   cached archive, first on ``PYTHONPATH`` over the base env; measured cold (a scratch cache whose
   ``pypi/`` archives are shared with the real cache, so no download is timed) and warm (reused).
2. ``venv`` (for comparison only): a fresh venv with ``torch==2.13.0``, the project's dependencies and
   the release (with its own dependencies).

Writes ``benchmarks/RESULTS_probes.md``. Not a test: numbers depend on the machine and its load. The
pythonpath envs are also built in the real cache (``--populate``) so the sweep reuses them.

    nice -n 19 .venv/bin/python benchmarks/prepare_envs.py --populate
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.cache import default_cache_dir
from harness.probes.envs import prepare_revision
from harness.versions import DYNAMIC_RELEASES

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    revision: str
    method: str
    seconds: float
    warm_s: float
    disk_mb: float
    notes: str


def disk_mb(paths: list[Path]) -> float:
    total = 0
    for base in paths:
        for dirpath, _, files in os.walk(base):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    pass
    return total / 2**20


def measure(version: str, method: str, scratch: Path) -> Row:
    spec = f"pypi:{version}"
    cold = prepare_revision(spec, cache_dir=scratch, method=method)
    if cold.error:
        return Row(version, method, cold.prepare_s, 0.0, 0.0, cold.error.splitlines()[0])
    warm = prepare_revision(spec, cache_dir=scratch, method=method)
    dirs = [Path(p) for p in cold.pythonpath] if method == "pythonpath" else [Path(cold.python).parent.parent]
    return Row(version, method, cold.prepare_s, warm.prepare_s, disk_mb(dirs), "; ".join(cold.notes))


def write(rows: list[Row], out: Path, started: str, load: tuple[float, ...], wall: float) -> None:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    lines = [
        "# Preparing megatron-core releases for the dynamic probes",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores (shared with other agents); Python {platform.python_version()}; "
        f"run {started}, load average at start {', '.join(f'{x:.1f}' for x in load)}; whole run {wall:.0f}s, "
        "under `nice -n 19`.",
        "",
        "- **pythonpath** (what `mcore-compat sweep` uses): `pip install --no-deps --ignore-requires-python "
        "--target <cache>/envs/<version>-<sha8>` from the cached archive, built once (temporary directory "
        "renamed into place under a file lock), then first on `PYTHONPATH` over the project venv "
        "(torch 2.13.0+cpu, transformers). Releases before 0.9 also get `setuptools<81` in a shared extra "
        "directory (built with the first of them; its size is counted there).",
        "- **venv** (measured only): a fresh venv, `torch==2.13.0` first (local CPU wheel), then the "
        "project's dependencies, then the release with its own dependencies "
        "(`--no-deps --ignore-requires-python` for releases declaring Python >= 3.12).",
        "- *seconds*: cold preparation (archive already downloaded: no network time for the release itself); "
        "*reuse s*: the same call once built; *disk MB*: blocks used by the env's directories.",
        "",
        "| revision | method | seconds | reuse s | disk MB | notes |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.revision} | {r.method} | {r.seconds:.1f} | {r.warm_s:.2f} | {r.disk_mb:.0f} | "
                     f"{r.notes.replace('|', '/')} |")
    py = [r for r in rows if r.method == "pythonpath" and not r.notes.startswith("prepare failed")]
    venv = [r for r in rows if r.method == "venv" and not r.notes.startswith("prepare failed")]
    lines += ["", "Totals:", ""]
    if py:
        lines.append(f"- pythonpath: {len(py)} releases in {sum(r.seconds for r in py):.0f}s "
                     f"(median {sorted(r.seconds for r in py)[len(py) // 2]:.1f}s), "
                     f"{sum(r.disk_mb for r in py):.0f} MB in all")
    if venv:
        lines.append(f"- venv: {len(venv)} releases in {sum(r.seconds for r in venv):.0f}s, "
                     f"{sum(r.disk_mb for r in venv):.0f} MB in all")
    for v in sorted({r.revision for r in venv}):
        pair = {r.method: r for r in rows if r.revision == v}
        if "pythonpath" in pair and "venv" in pair and pair["pythonpath"].seconds > 0:
            lines.append(f"- {v}: venv / pythonpath = {pair['venv'].seconds / pair['pythonpath'].seconds:.0f}x "
                         f"the time, {pair['venv'].disk_mb / max(pair['pythonpath'].disk_mb, 1):.0f}x the disk")
    lines += ["", "Reproduce with `nice -n 19 .venv/bin/python benchmarks/prepare_envs.py`."]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", nargs="*", default=list(DYNAMIC_RELEASES))
    ap.add_argument("--venv-versions", nargs="*", default=["0.16.1", "0.19.2"])
    ap.add_argument("--populate", action="store_true", help="also build the pythonpath envs in the real cache")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_probes.md")
    args = ap.parse_args()
    started, load, t0 = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg(), time.perf_counter()
    real = default_cache_dir()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="prepare-bench-", dir=real) as tmp:
        scratch = Path(tmp)
        (scratch / "pypi").symlink_to(real / "pypi", target_is_directory=True)
        for v in args.versions:
            rows.append(measure(v, "pythonpath", scratch))
            print(rows[-1], flush=True)
            if args.populate:
                prepare_revision(f"pypi:{v}", cache_dir=real)
        for v in args.venv_versions:
            rows.append(measure(v, "venv", scratch))
            print(rows[-1], flush=True)
            shutil.rmtree(scratch / "venvs", ignore_errors=True)
    write(rows, args.out, started, load, time.perf_counter() - t0)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
