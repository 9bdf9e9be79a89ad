"""torch_dist checkpoint benchmark: ``import-ckpt`` (model built), ``convert --format torch_dist`` (offline)
and ``export-ckpt`` against the durable I/O floor, on a tiny and a ~125M-parameter Llama on CPU.

Each phase runs ``--reps`` times in a fresh process; imports and config parsing happen before the clock.
Reported per phase: wall seconds of the work (median and range), the whole process' wall seconds, and
peak RSS above the RSS before the work (``VmHWM`` reset through ``/proc/self/clear_refs``). Every phase
writes durably (fsync), as does the floor: ``load_file`` of every tensor + ``save_file`` + fsync.

    nice -n 10 .venv/bin/python benchmarks/megatron_ckpt_bench.py --work /tmp/mc-bench --reps 3 \
        --json benchmarks/RESULTS_megatron_ckpt.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "tiny": dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=128),
    "125m": dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                 num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=2048),
}
PHASES = ("floor", "import_ckpt", "convert_torch_dist", "export_ckpt")

CHILD = r"""
import json, os, sys, time
phase, src, out = sys.argv[1:4]

def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

def fsync_tree(root):
    for d, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(d, f), os.O_RDONLY); os.fsync(fd); os.close(fd)

if phase == "floor":
    from safetensors.torch import load_file, save_file
    def work():
        os.makedirs(out)
        save_file(load_file(src + "/model.safetensors"), out + "/model.safetensors")
        fsync_tree(out)
else:
    from bridge.auto_bridge import AutoBridge
    from bridge.megatron_ckpt.offline import convert_to_torch_dist
    from bridge.streaming.convert import family_for
    import megatron.core.dist_checkpointing  # noqa: F401
    family_for(src if phase != "export_ckpt" else src + "/hf", None)
    work = {"import_ckpt": lambda: AutoBridge.import_ckpt(src, out),
            "convert_torch_dist": lambda: convert_to_torch_dist(src, out, progress=False),
            "export_ckpt": lambda: AutoBridge.export_ckpt(src, out)}[phase]

if __name__ == "__main__":
    base = rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = time.perf_counter()
    work()
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss": rss("VmHWM") - base}))
"""


def _checkpoint(path: Path, shape: dict) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if not (path / "model.safetensors").is_file():
        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(**shape)).to(torch.bfloat16).save_pretrained(path)
    return (path / "model.safetensors").stat().st_size


def _run(phase: str, src: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, phase, str(src), str(out)], env=env, capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"{phase} failed: {proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    report: dict = {}
    for model in args.models:
        hf = args.work / model / "hf"
        size = _checkpoint(hf, MODELS[model])
        ckpt = args.work / model / "torch_dist"
        if not (ckpt / "latest_checkpointed_iteration.txt").exists():
            _run("convert_torch_dist", hf, ckpt)
        runs: dict[str, list[dict]] = {p: [] for p in PHASES}
        for rep in range(args.reps):
            for phase in PHASES:
                src = ckpt if phase == "export_ckpt" else hf
                runs[phase].append(_run(phase, src, args.work / model / f"out-{phase}"))
        rows = {}
        for phase, results in runs.items():
            secs = [r["seconds"] for r in results]
            rows[phase] = {"seconds_median": statistics.median(secs), "seconds_min": min(secs),
                           "seconds_max": max(secs),
                           "process_seconds_median": statistics.median(r["process_seconds"] for r in results),
                           "peak_rss_bytes_max": max(r["peak_rss"] for r in results)}
        floor = rows["floor"]["seconds_median"]
        for row in rows.values():
            row["vs_floor"] = row["seconds_median"] / floor
        report[model] = {"checkpoint_bytes": size, "phases": rows}
        print(json.dumps({model: report[model]}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
