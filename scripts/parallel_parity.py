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
import time
from pathlib import Path

import torch
import torch.distributed as dist

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _hf_logits(path: Path, ids: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="eager").to(device).eval()
    with torch.no_grad():
        return model(ids.to(device)).logits.float()


def _bit_exact(a: Path, b: Path) -> tuple[bool, list[str]]:
    from safetensors.torch import load_file

    def load(p: Path) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for f in sorted(p.glob("*.safetensors")):
            out.update(load_file(f))
        return out

    x, y = load(a), load(b)
    bad = sorted(set(x) ^ set(y)) + sorted(n for n in set(x) & set(y)
                                            if x[n].dtype != y[n].dtype or not torch.equal(x[n], y[n]))
    return not bad, bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", type=Path, required=True)
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--pp", type=int, default=1)
    ap.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--seq", type=int, default=16)
    args = ap.parse_args(argv)

    from bridge import AutoBridge
    from bridge.inference import forward_logits

    t0 = time.perf_counter()
    dtype = _DTYPES[args.dtype]
    bridge = AutoBridge.from_hf_pretrained(args.hf)
    provider = bridge.to_megatron_provider()
    provider.tensor_model_parallel_size = args.tp
    provider.pipeline_model_parallel_size = args.pp
    provider.params_dtype = dtype
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    t_load = time.perf_counter() - t0

    vocab = bridge.hf_config.vocab_size
    ids = torch.randint(0, vocab, (2, args.seq), generator=torch.Generator().manual_seed(0))
    logits = forward_logits(model, ids, vocab_size=vocab)
    rank = dist.get_rank()
    result: dict[str, object] = {}
    if logits is not None:  # last pipeline stage
        device = logits.device
        ref = _hf_logits(args.hf, ids, dtype, device)
        ours = logits.float()
        result = {
            "max_abs_diff": (ours - ref).abs().max().item(),
            "cosine_similarity": torch.nn.functional.cosine_similarity(ours.flatten(), ref.flatten(), dim=0).item(),
        }
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (rank, result))
    t1 = time.perf_counter()
    bridge.save_hf_pretrained(model, args.out_dir, overwrite=True)
    t_export = time.perf_counter() - t1
    if rank == 0:
        import megatron.core
        import transformers

        exact, bad = _bit_exact(args.hf, args.out_dir)
        stage = [r for _, r in sorted(gathered, key=lambda x: x[0]) if r]
        report = {
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "backend": dist.get_backend(),
            "world_size": dist.get_world_size(),
            "tp": args.tp, "pp": args.pp, "dtype": args.dtype,
            "versions": {"torch": torch.__version__, "megatron_core": megatron.core.__version__,
                         "transformers": transformers.__version__, "python": sys.version.split()[0]},
            "max_abs_diff": max(r["max_abs_diff"] for r in stage),
            "cosine_similarity": min(r["cosine_similarity"] for r in stage),
            "export_bit_exact": exact,
            "export_mismatches": bad[:20],
            "seconds": {"build_and_load": round(t_load, 3), "export": round(t_export, 3)},
        }
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
