"""``mcore-compat import-ckpt HF_DIR MEGATRON_DIR``: HF checkpoint -> Megatron-LM ``torch_dist`` checkpoint.

In one process, for a dense GPTModel family, writes the checkpoint straight from the safetensors files
with no model built (as ``convert --format torch_dist``; the same tensors load from it). Otherwise, or with
``--build-model``, builds the model (at ``--tp`` x ``--pp`` when run under ``torchrun``; TP = PP = 1
otherwise), fills it from the HF weights and saves it with MCore's ``dist_checkpointing``. Either way as
Megatron-LM lays it out
(``latest_checkpointed_iteration.txt`` + ``iter_0000000/``), with the HF config, tokenizer and code
files and mcore-compat's record next to it, so ``export-ckpt`` needs nothing else. Megatron-LM
loads it with ``--load MEGATRON_DIR --finetune --ckpt-format torch_dist``. Atomic: a failure leaves
nothing behind, and a directory that is not a checkpoint is never replaced.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["HELP", "add_arguments", "run"]

HELP = "convert an HF checkpoint to a Megatron-LM torch_dist checkpoint (dist_checkpointing)"

_DTYPES = ("bf16", "fp16", "fp32")  # bridge.streaming.family.DTYPES without "keep" (the model holds one dtype)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hf_dir", metavar="HF_DIR", help="HF checkpoint directory (or Hub ID in the local cache)")
    parser.add_argument("megatron_dir", type=Path, metavar="MEGATRON_DIR")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel size (needs torchrun with TP x PP ranks)")
    parser.add_argument("--pp", type=int, default=1, help="pipeline-parallel size")
    parser.add_argument("--dtype", choices=_DTYPES, default=None, help="parameter dtype (default: the config's)")
    parser.add_argument("--pad-vocab", action="store_true",
                        help="pad the vocabulary to a multiple of 128 x TP, as Megatron-LM does")
    parser.add_argument("--model-class", choices=("auto", "gpt", "hybrid"), default="auto",
                        help="MCore model class whose parameter layout is written (auto: GPTModel while MCore has it)")
    parser.add_argument("--build-model", action="store_true",
                        help="build the model and save it with MCore's dist_checkpointing even where the offline "
                             "writer could (e.g. to test this MCore release's writer)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at MEGATRON_DIR")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a custom-code checkpoint's config classes to run (see SECURITY.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from bridge.auto_bridge import AutoBridge
    from bridge.errors import BridgeError
    from bridge.streaming.family import parse_dtype

    overrides: dict = {"tensor_model_parallel_size": args.tp, "pipeline_model_parallel_size": args.pp,
                       "model_class": args.model_class}
    if args.dtype:
        overrides["params_dtype"] = parse_dtype(args.dtype)
    if args.pad_vocab:
        overrides["should_pad_vocab"] = True
    started = time.perf_counter()
    try:
        out = AutoBridge.import_ckpt(args.hf_dir, args.megatron_dir, overwrite=args.overwrite,
                                     trust_remote_code=args.trust_remote_code or None,
                                     progress=False if args.no_progress else None,
                                     offline=False if args.build_model else None, **overrides)
    except BridgeError as e:
        print(f"mcore-compat import-ckpt: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} (torch_dist, TP={args.tp}, PP={args.pp}) in {time.perf_counter() - started:.1f} s")
    return 0
