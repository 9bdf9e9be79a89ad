"""The GPU runs of issue 19 that fit the lent machine: HybridModel and GPTModel parity per family and dtype,
each layout under ``torchrun`` (NCCL), one JSON report per run plus a summary.

    python scripts/gpu_suite.py --out OUT [--families llama qwen3 qwen3_moe] [--layouts 1x1x1 2x1x1 1x2x1 2x2x1 1x1x2]

A layout is ``TPxPPxEP``; one that needs more GPUs than the machine has is recorded as not run, with the reason,
never silently dropped. Checkpoints are the probes' tiny ones (``harness.probes.tiny_models``: every tensor
perturbed, so a dropped or swapped tensor changes the logits and the export); the per-run comparison is
``scripts/parallel_parity.py`` (HF logits on the last stage, the export compared tensor by tensor).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DTYPES = ("float32", "bfloat16")
MODEL_CLASSES = ("gpt", "hybrid")
MOE_FAMILIES = frozenset({"qwen3_moe", "deepseek_v3", "mixtral", "qwen2_moe"})


def _layout(text: str) -> tuple[int, int, int]:
    tp, pp, ep = (int(x) for x in text.split("x"))
    return tp, pp, ep


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _checkpoints(family: str, work: Path) -> dict[str, Path]:
    """The family's first tiny variant as an fp32 checkpoint and as a bf16 one (the bf16 run loads, and
    must export bit-exactly, a bf16 checkpoint: a cast on load would not round-trip)."""
    from transformers import AutoModelForCausalLM

    from harness.probes.tiny_models import family_variants, write_checkpoint

    fp32 = write_checkpoint(family_variants(family)[0], work / f"hf-{family}-float32", seed=0)
    bf16 = work / f"hf-{family}-bfloat16"
    AutoModelForCausalLM.from_pretrained(fp32, dtype="bfloat16").save_pretrained(bf16)
    return {"float32": fp32, "bfloat16": bf16}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu-suite"))
    ap.add_argument("--families", nargs="+", default=["llama", "qwen3", "qwen3_moe"])
    ap.add_argument("--layouts", nargs="+", default=["1x1x1", "2x1x1", "1x2x1", "2x2x1", "1x1x2"])
    ap.add_argument("--model-classes", nargs="+", default=list(MODEL_CLASSES))
    ap.add_argument("--timeout", type=int, default=240)
    ap.add_argument("--max-world", type=int, default=None,
                    help="processes a run may use (default: the GPUs present; on CPU the runs use gloo)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    gpus = _gpus() if args.max_world is None else args.max_world
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    rows: list[dict] = []
    for family in args.families:
        checkpoints = _checkpoints(family, args.work)
        for text in args.layouts:
            tp, pp, ep = _layout(text)
            world = tp * pp * ep
            if ep > 1 and family not in MOE_FAMILIES:
                continue
            for model_class in args.model_classes:
                for dtype in DTYPES:
                    row = {"family": family, "tp": tp, "pp": pp, "ep": ep, "model_class": model_class, "dtype": dtype}
                    if world > gpus:
                        rows.append({**row, "status": "not run", "reason": f"needs {world} processes (GPUs), this machine allows {gpus}"})
                        continue
                    name = f"{family}_{model_class}_tp{tp}_pp{pp}_ep{ep}_{dtype}"
                    report = args.out / f"{name}.json"
                    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={world}",
                           str(ROOT / "scripts" / "parallel_parity.py"), "--hf", str(checkpoints[dtype]), "--tp", str(tp),
                           "--pp", str(pp), "--ep", str(ep), "--dtype", dtype, "--model-class", model_class,
                           "--out-dir", str(args.work / f"export-{name}"), "--report", str(report)]
                    t0 = time.perf_counter()
                    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
                    wall = round(time.perf_counter() - t0, 1)
                    if proc.returncode or not report.exists():
                        rows.append({**row, "status": "error", "wall_s": wall,
                                     "reason": (proc.stdout + proc.stderr)[-1500:]})
                        continue
                    data = json.loads(report.read_text())
                    rows.append({**row, "status": "ran", "wall_s": wall, **{k: data[k] for k in (
                        "device", "max_abs_diff", "cosine_similarity", "export_bit_exact", "versions")}})
                    print(json.dumps(rows[-1]), flush=True)
    (args.out / "gpu_suite.json").write_text(json.dumps(rows, indent=2))
    failed = [r for r in rows if r["status"] == "error"]
    for r in failed:
        print("ERROR", r["family"], r["model_class"], r["dtype"], r["tp"], r["pp"], r["ep"], r["reason"][-600:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
