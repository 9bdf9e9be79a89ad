"""Multi-process parity check: HF checkpoint -> MCore TP x PP -> logits vs HF -> export bit-exact.

Run under torchrun (gloo on CPU, nccl on GPU)::

    OMP_NUM_THREADS=1 torchrun --nproc-per-node=4 scripts/parallel_parity.py \
        --hf CKPT --tp 2 --pp 2 --dtype float32 --out-dir EXPORT --report report.json

Global rank 0 writes a JSON report: device, versions, layout, max abs diff and cosine similarity of the
logits against HF (computed on the last pipeline stage), and whether the export is bit-exact.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", type=Path, required=True)
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--pp", type=int, default=1)
    ap.add_argument("--ep", type=int, default=1, help="expert parallel size (MoE models)")
    ap.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--model-class", choices=("auto", "gpt", "hybrid"), default="auto",
                    help="MCore model class to build (the provider's model_class)")
    ap.add_argument("--trust-remote-code", action="store_true", help="the checkpoint's own modelling code may run")
    ap.add_argument("--first-stage-layers", type=int, default=None,
                    help="layers of the first pipeline stage (uneven PP; default: an even split)")
    args = ap.parse_args(argv)

    from bridge.parity import run_layout_parity

    result = run_layout_parity(args.hf, args.out_dir, tp=args.tp, pp=args.pp, ep=args.ep, dtype=_DTYPES[args.dtype],
                               seq=args.seq, model_class=args.model_class,
                               trust_remote_code=True if args.trust_remote_code else None,
                               first_stage_layers=args.first_stage_layers)
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, result)
    if result.rank == 0:
        import megatron.core
        import transformers

        stages = [r.agreement for r in gathered if r.agreement is not None]
        comparison = result.comparison
        bad = [*comparison.missing, *comparison.unexpected, *comparison.different]
        report = {
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "backend": dist.get_backend(),
            "world_size": dist.get_world_size(),
            "tp": args.tp, "pp": args.pp, "ep": args.ep, "dtype": args.dtype, "model_class": result.model_class,
            "versions": {"torch": torch.__version__, "megatron_core": megatron.core.__version__,
                         "transformers": transformers.__version__, "python": sys.version.split()[0]},
            "max_abs_diff": max(a.max_abs_diff for a in stages),
            "cosine_similarity": min(a.cosine_similarity for a in stages),
            "export_bit_exact": comparison.bit_exact,
            "export_mismatches": bad[:20],
            "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        }
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2))
    dist.barrier()
    dist.destroy_process_group()
    return 0

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
