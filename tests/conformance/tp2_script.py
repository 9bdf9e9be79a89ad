"""The guide's steps at TP = 2 over gloo, for the conformance suite (run under torchrun, 2 processes).

For each checkpoint of ``--cases`` (a ``torch.save``d list of ``{"path", "input_ids", "hf_logits"}``, and
``"trust_remote_code": True`` where the checkpoint carries its code):
load, provide with ``tensor_model_parallel_size = 2``, forward, stream ``export_hf_weights`` and
``save_hf_pretrained``. Global rank 0 writes one JSON report entry per checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conformance import guide  # noqa: E402  (after the path is set)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--report", type=Path, required=True)
    args = ap.parse_args()
    report = []
    for i, case in enumerate(torch.load(args.cases)):
        path = Path(case["path"])
        bridge = guide.load(path, **({"trust_remote_code": True} if case.get("trust_remote_code") else {}))
        model = guide.provide(bridge, tp=2)
        logits = guide.forward(model, case["input_ids"])
        streamed = guide.stream_weights(bridge, model)  # every rank iterates; rank 0 receives
        out = args.out_dir / f"export-{i}"
        guide.save_pretrained(bridge, model, out)
        if dist.get_rank() == 0:
            source = _tensors(path)
            saved = _tensors(out)
            report.append({
                "path": str(path),
                "tp": model[0].config.tensor_model_parallel_size,
                "logits_shape": list(logits.shape),
                "hf_shape": list(case["hf_logits"].shape),
                "max_abs_diff": (logits - case["hf_logits"]).abs().max().item(),
                "streamed_bit_exact": sorted(streamed) == sorted(source)
                and all(torch.equal(streamed[n], t) for n, t in source.items()),
                "saved_bit_exact": sorted(saved) == sorted(source)
                and all(torch.equal(saved[n], t) for n, t in source.items()),
            })
    if dist.get_rank() == 0:
        args.report.write_text(json.dumps(report, indent=1))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
