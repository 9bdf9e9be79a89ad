"""``mcore-compat export MEGATRON_DIR HF_DIR``: saved Megatron layout -> HF checkpoint, offline.

Streams :func:`bridge.streaming.export_checkpoint`: merges one parameter at a time from its TP
shards and writes each HF tensor at its final place in the output shards, so memory stays about
one merged group whatever ``--max-shard-size``. The output is the ``transformers`` layout (sharded
safetensors + ``model.safetensors.index.json``, dtypes as saved) with the config, tokenizer and
custom code files kept next to the layout (or taken from ``--config-dir``); it appears atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.exitcodes import EXIT_FAILURE, EXIT_OK

__all__ = ["HELP", "add_arguments", "run"]

HELP = "export a saved Megatron TP x PP layout to an HF checkpoint (streaming, no model built)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("megatron_dir", type=Path, metavar="MEGATRON_DIR")
    parser.add_argument("hf_dir", type=Path, metavar="HF_DIR")
    parser.add_argument("--max-shard-size", default=None, metavar="SIZE",
                        help="bytes per weight file, e.g. 5GB (default: save_pretrained's, 50GB)")
    parser.add_argument("--config-dir", default=None, metavar="DIR_OR_HUB_ID",
                        help="HF config directory or Hub ID org/name (default: MEGATRON_DIR, where convert stores it)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit when --config-dir is a Hub ID")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at HF_DIR")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a custom-code checkpoint's config classes to run (see SECURITY.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from bridge.errors import BridgeError
    from bridge.streaming import export_checkpoint

    shard = {} if args.max_shard_size is None else {"max_shard_size": args.max_shard_size}
    try:
        result = export_checkpoint(
            args.megatron_dir, args.hf_dir, **shard, overwrite=args.overwrite,
            config_dir=args.config_dir, trust_remote_code=args.trust_remote_code or None,
            progress=False if args.no_progress else None, revision=args.revision,
        )
    except BridgeError as e:
        print(f"mcore-compat export: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"wrote {result.path} ({result.tensors} tensors in {len(result.files)} file(s), "
          f"{result.bytes / 1e9:.2f} GB in {result.seconds:.1f} s)")
    return EXIT_OK
