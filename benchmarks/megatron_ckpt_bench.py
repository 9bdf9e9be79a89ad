"""torch_dist checkpoint benchmark: ``import-ckpt`` (model built), ``convert --format torch_dist`` (offline)
and ``export-ckpt`` against the durable I/O floor, on a tiny, a ~125M and a 1.1B-parameter Llama on CPU.

Whole-process phases (``*_process``) time the command a user runs, start-up included: ``mcore-compat convert
--format torch_dist``, ``mcore-compat convert`` (saved layout, TP=1) and ``mcore-compat export`` (that layout
back to HF), against ``floor_process``: a script that imports only torch + safetensors and copies the same
files with fsync. The 1-minute load average is recorded before and after each model (the box is shared).

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
    # TinyLlama-1.1B's shape (RESULTS.md section 1), untied: 1.10e9 parameters, 2.20 GB in bf16.
    "1.1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                 num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048),
}
PHASES = ("floor", "import_ckpt", "import_ckpt_offline", "convert_torch_dist", "export_ckpt", "export_ckpt_offline")
PROCESS_PHASES = ("floor_process", "convert_torch_dist_process", "convert_layout_process", "export_layout_process")
FLOOR_SCRIPT = r"""
import os, sys
import torch  # noqa: F401 - what any converter imports
from safetensors.torch import load_file, save_file
src, out = sys.argv[1:3]
os.makedirs(out)
for name in sorted(os.listdir(src)):
    if name.endswith(".safetensors"):
        save_file(load_file(os.path.join(src, name)), os.path.join(out, name), metadata={"format": "pt"})
    elif name.endswith(".json"):
        with open(os.path.join(src, name), "rb") as f, open(os.path.join(out, name), "wb") as g:
            g.write(f.read())
for name in os.listdir(out):
    fd = os.open(os.path.join(out, name), os.O_RDONLY); os.fsync(fd); os.close(fd)
fd = os.open(out, os.O_RDONLY); os.fsync(fd); os.close(fd)
"""

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
    family_for(src if not phase.startswith("export_ckpt") else src + "/hf", None)
    work = {"import_ckpt": lambda: AutoBridge.import_ckpt(src, out, offline=False),  # the model built
            "import_ckpt_offline": lambda: AutoBridge.import_ckpt(src, out, offline=True),  # the default route
            "convert_torch_dist": lambda: convert_to_torch_dist(src, out, open_bridge=AutoBridge.from_hf_pretrained,
                                                                progress=False),
            "export_ckpt": lambda: AutoBridge.export_ckpt(src, out, offline=False),  # the model built and loaded
            "export_ckpt_offline": lambda: AutoBridge.export_ckpt(src, out, offline=True)}[phase]

if __name__ == "__main__":
    base = rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = time.perf_counter()
    work()
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss": rss("VmHWM") - base}))
"""


def _checkpoint(path: Path, shape: dict) -> int:
    """A random bf16 Llama of ``shape``: one ``model.safetensors`` and ``config.json`` (written tensor by
    tensor from a seeded generator, std 0.02, norms around 1; no model is built)."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    from peer_gpu import _llama_shapes

    if not (path / "model.safetensors").is_file():
        path.mkdir(parents=True, exist_ok=True)
        LlamaConfig(**shape, tie_word_embeddings=False, dtype="bfloat16",
                    architectures=["LlamaForCausalLM"]).save_pretrained(path)
        gen = torch.Generator().manual_seed(0)
        tensors = {}
        for name, size in _llama_shapes(shape).items():
            t = torch.randn(size, generator=gen) * 0.02
            tensors[name] = (t + 1.0 if name.endswith("norm.weight") else t).to(torch.bfloat16)
        save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    return (path / "model.safetensors").stat().st_size


def _load() -> float:
    return os.getloadavg()[0]


#: ``--config-cache``: ``cold`` gives every process an empty resolved-config cache (bridge.config_cache: the
#: first run on a machine), ``warm`` one cache filled before the first repetition (every later run), ``user``
#: leaves the environment as it is.
CONFIG_CACHE = {"mode": "user", "dir": None}


def _config_cache_env(out: Path) -> dict[str, str]:
    if CONFIG_CACHE["mode"] == "cold":
        fresh = out.parent / f"config-cache-{out.name}"
        shutil.rmtree(fresh, ignore_errors=True)
        return {"MCORE_COMPAT_CONFIG_CACHE": str(fresh)}
    if CONFIG_CACHE["mode"] == "warm":
        return {"MCORE_COMPAT_CONFIG_CACHE": str(CONFIG_CACHE["dir"])}
    return {}


def _run_process(phase: str, src: Path, out: Path, layout: Path) -> dict:
    """Whole-process wall seconds of one command (start-up included)."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **_config_cache_env(out)}
    cli = [sys.executable, "-m", "harness.cli"]
    cmd = {"floor_process": [sys.executable, "-c", FLOOR_SCRIPT, str(src), str(out)],
           "convert_torch_dist_process": cli + ["convert", str(src), str(out), "--format", "torch_dist", "--no-progress"],
           "convert_layout_process": cli + ["convert", str(src), str(out), "--no-progress"],
           "export_layout_process": cli + ["export", str(layout), str(out), "--no-progress"]}[phase]
    subprocess.run(["sync"])
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"{phase} failed: {proc.stderr[-3000:]}")
    return {"seconds": time.perf_counter() - started}


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


def _rows(runs: dict[str, list[dict]], floor: str) -> dict[str, dict]:
    rows = {}
    for phase, results in runs.items():
        if not results:
            continue
        secs = [r["seconds"] for r in results]
        rows[phase] = {"seconds_median": statistics.median(secs), "seconds_min": min(secs), "seconds_max": max(secs),
                       "seconds_all": [round(x, 3) for x in secs]}
        if "process_seconds" in results[0]:
            rows[phase]["process_seconds_median"] = statistics.median(r["process_seconds"] for r in results)
            rows[phase]["peak_rss_bytes_max"] = max(r["peak_rss"] for r in results)
    if floor in rows:
        for row in rows.values():
            row["vs_floor_median"] = row["seconds_median"] / rows[floor]["seconds_median"]
            row["vs_floor_min"] = row["seconds_min"] / rows[floor]["seconds_min"]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--phases", nargs="+", default=list(PHASES + PROCESS_PHASES), choices=PHASES + PROCESS_PHASES)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--config-cache", choices=("user", "cold", "warm"), default="user",
                    help="resolved-config cache of the whole-process phases: cold (empty for every process), warm "
                         "(filled before the first repetition), user (the environment's; default)")
    args = ap.parse_args()
    CONFIG_CACHE.update(mode=args.config_cache, dir=args.work / "config-cache-warm")
    report: dict = {}
    for model in args.models:
        hf = args.work / model / "hf"
        size = _checkpoint(hf, MODELS[model])
        ckpt, layout = args.work / model / "torch_dist", args.work / model / "layout"
        if not (ckpt / "latest_checkpointed_iteration.txt").exists():
            _run("convert_torch_dist", hf, ckpt)
        if "export_layout_process" in args.phases and not (layout / "layout.json").exists():
            _run_process("convert_layout_process", hf, layout, layout)
        if args.config_cache == "warm":  # one discarded run fills the cache the measured ones read
            _run_process("convert_layout_process", hf, args.work / model / "out-warm-up", layout)
            shutil.rmtree(args.work / model / "out-warm-up", ignore_errors=True)
        runs: dict[str, list[dict]] = {p: [] for p in args.phases}
        loads = [_load()]
        for rep in range(args.reps):  # phases interleaved, so a load spike hits one repetition of each
            for phase in args.phases:
                out = args.work / model / f"out-{phase}"
                if phase in PROCESS_PHASES:
                    runs[phase].append(_run_process(phase, hf, out, layout))
                else:
                    runs[phase].append(_run(phase, ckpt if phase.startswith("export_ckpt") else hf, out))
                shutil.rmtree(out, ignore_errors=True)
                print(f"{model} rep {rep} {phase}: {runs[phase][-1]['seconds']:.2f} s (load {_load():.1f})",
                      file=sys.stderr, flush=True)
            loads.append(_load())
        report[model] = {"checkpoint_bytes": size, "load_average_1min": loads, "config_cache": args.config_cache,
                         "phases": {**_rows({p: runs[p] for p in PHASES if p in runs}, "floor"),
                                    **_rows({p: runs[p] for p in PROCESS_PHASES if p in runs}, "floor_process")}}
        print(json.dumps({model: report[model]}, indent=1))
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
