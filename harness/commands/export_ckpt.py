"""``mcore-compat export-ckpt MEGATRON_DIR HF_DIR``: Megatron-LM ``torch_dist`` checkpoint -> HF checkpoint.

Loads the checkpoint at TP = PP = 1 (``dist_checkpointing`` reshards whatever layout wrote it) and
exports it to the ``transformers`` layout. A checkpoint from ``import-ckpt`` needs nothing else; one
that Megatron-LM's ``save_checkpoint`` wrote needs ``--hf-config`` (the model's HF config directory
or Hub ID), checked against the ``args`` in its ``common.pt``. The output appears atomically.

A checkpoint with GPTModel names and no mixture of experts is exported without building the model: its
tensors are copied from the ``.distcp`` records (no GPU, memory about one parameter) once the index is checked
against mcore-compat's record or, for one Megatron-LM wrote, the model built on the meta device; the same
tensors, dtypes and files come out (sharded outputs may group tensors into files otherwise). ``--build-model``
always builds and loads the model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["HELP", "add_arguments", "run"]

HELP = "export a Megatron-LM torch_dist checkpoint to an HF checkpoint (any TP x PP, resharded on load)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("megatron_dir", type=Path, metavar="MEGATRON_DIR",
                        help="checkpoint root (with latest_checkpointed_iteration.txt) or an iter_* directory")
    parser.add_argument("hf_dir", type=Path, metavar="HF_DIR")
    parser.add_argument("--hf-config", default=None, metavar="DIR_OR_HUB_ID",
                        help="HF config of the model (required when Megatron-LM wrote the checkpoint)")
    parser.add_argument("--max-shard-size", default=None, metavar="SIZE", help="bytes per weight file, e.g. 5GB")
    parser.add_argument("--model-class", choices=("auto", "gpt", "hybrid"), default=None,
                        help="MCore model class to load into (default: the writer's; a GPTModel checkpoint also "
                             "reads into hybrid)")
    parser.add_argument("--build-model", action="store_true",
                        help="build the model and load it with dist_checkpointing even where the tensors can be "
                             "copied from the records without it")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at HF_DIR")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a custom-code checkpoint's config classes to run (see SECURITY.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from bridge.auto_bridge import AutoBridge
    from bridge.errors import BridgeError

    started = time.perf_counter()
    try:
        out = AutoBridge.export_ckpt(args.megatron_dir, args.hf_dir, hf_config=args.hf_config, overwrite=args.overwrite,
                          max_shard_size=args.max_shard_size, trust_remote_code=args.trust_remote_code or None,
                          progress=False if args.no_progress else None, model_class=args.model_class,
                          offline=False if args.build_model else None)
    except BridgeError as e:
        print(f"mcore-compat export-ckpt: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} in {time.perf_counter() - started:.1f} s")
    return 0
