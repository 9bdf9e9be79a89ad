"""Resharding on load, under torchrun: save a torch_dist checkpoint at one TP x PP, load it at another.

    OMP_NUM_THREADS=1 torchrun --nproc-per-node=4 scripts/megatron_ckpt_parity.py \
        --hf CKPT --tp 2 --pp 2 --save DIR --report save.json
    OMP_NUM_THREADS=1 torchrun --nproc-per-node=1 scripts/megatron_ckpt_parity.py \
        --hf CKPT --tp 1 --pp 1 --load DIR --report load.json

``--save`` imports the HF checkpoint at ``--tp`` x ``--pp`` and writes it with ``import_ckpt``;
``--load`` builds the model at ``--tp`` x ``--pp``, loads the checkpoint (``load_megatron_model``) and
compares the logits with HF's on the last stage. Global rank 0 writes a JSON report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", type=Path, required=True)
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--pp", type=int, default=1)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path)
    mode.add_argument("--load", type=Path)
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--model-class", choices=("auto", "gpt", "hybrid"), default=None,
                    help="--save: the layout written (default auto); --load: the model built (default: the writer's "
                         "for the checkpoint's own provider, else auto; a GPT checkpoint reads into hybrid)")
    args = ap.parse_args(argv)

    from bridge.auto_bridge import AutoBridge
    from bridge.inference import forward_logits

    report: dict = {"tp": args.tp, "pp": args.pp}
    if args.save:
        AutoBridge.import_ckpt(args.hf, args.save, tensor_model_parallel_size=args.tp, offline=False,
                               pipeline_model_parallel_size=args.pp, model_class=args.model_class or "auto")
        diffs = []
    else:
        extra = {"model_class": args.model_class} if args.model_class else {}
        model = AutoBridge.from_hf_pretrained(args.hf).load_megatron_model(args.load, tp=args.tp, pp=args.pp, **extra)
        report["model_class"] = type(model[0]).__name__
        ids = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(0))
        logits = forward_logits(model, ids)
        diffs = []
        if logits is not None:
            from tests.helpers.tiny import hf_logits

            diffs.append((logits.cpu() - hf_logits(args.hf, ids)).abs().max().item())  # HF runs on the host
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, diffs)
    if dist.get_rank() == 0:
        found = [d for part in gathered for d in part]
        report.update(world_size=dist.get_world_size(), backend=dist.get_backend(),
                      max_abs_diff=max(found) if found else None)
        args.report.write_text(json.dumps(report))
    dist.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
