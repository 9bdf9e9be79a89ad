"""``mcore-compat convert HF_DIR_OR_HUB_ID OUT_DIR --tp N --pp M``: HF checkpoint -> saved Megatron layout, offline.

Streams :func:`bridge.streaming.convert_checkpoint`: no MCore model is built; each rank file is
written from only that rank's rows or columns of the HF tensors, so memory stays about one fused
group (q/k/v, gate/up) whatever the model size. The output (``layout.json``, one safetensors file
per (TP, PP) rank, the HF config, tokenizer and custom code files) appears atomically.

``--format torch_dist`` writes a Megatron-LM ``torch_dist`` checkpoint instead (as ``import-ckpt``
does, but without building the model: :func:`bridge.megatron_ckpt.offline.convert_to_torch_dist`);
it has no TP/PP of its own, since ``dist_checkpointing`` reshards on load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

__all__ = ["HELP", "add_arguments", "run"]

HELP = "convert an HF checkpoint to a saved Megatron TP x PP layout (streaming, no model built)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hf_dir", metavar="HF_DIR_OR_HUB_ID",
                        help="an HF checkpoint directory, or a Hub ID org/name (read from the Hugging Face cache when "
                             "HF_HUB_OFFLINE=1)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub ID (default: main)")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel size (default 1)")
    parser.add_argument("--pp", type=int, default=1, help="pipeline-parallel size (default 1)")
    parser.add_argument("--dtype", choices=("keep", "bf16", "fp16", "fp32"), default="keep",
                        help="dtype of the saved tensors (default: keep the checkpoint's)")
    parser.add_argument("--first-stage-layers", type=int, default=None)
    parser.add_argument("--last-stage-layers", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing layout at OUT_DIR")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a custom-code checkpoint's config classes to run (see SECURITY.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--pad-vocab", action="store_true",
                        help="pad the vocabulary to a multiple of 128 x TP as Megatron-LM does (default: only when TP "
                             "does not divide it); layout.json records it and export strips it")
    parser.add_argument("--format", choices=("layout", "torch_dist"), default="layout",
                        help="layout: our TP x PP safetensors layout (default); torch_dist: a Megatron-LM "
                             "checkpoint (dist_checkpointing), loadable at any TP x PP")
    parser.add_argument("--model-class", choices=("gpt", "hybrid"), default="gpt",
                        help="parameter names to save: GPTModel's (default; loads into GPT and Hybrid runs) or "
                             "HybridModel's (decoder.layers.{2i}/{2i+1}); layout.json records it, export reads both")


def run(args: argparse.Namespace) -> int:
    from bridge.errors import BridgeError, ParallelLayoutError
    from bridge.streaming import convert_checkpoint

    if args.format == "torch_dist":
        return _run_torch_dist(args)
    try:
        result = convert_checkpoint(
            args.hf_dir, args.out_dir, tp=args.tp, pp=args.pp, dtype=args.dtype,
            first_stage_layers=args.first_stage_layers, last_stage_layers=args.last_stage_layers,
            overwrite=args.overwrite, trust_remote_code=args.trust_remote_code or None,
            progress=False if args.no_progress else None, revision=args.revision, should_pad_vocab=args.pad_vocab,
            model_class=args.model_class,
        )
    except ParallelLayoutError as e:
        print(f"mcore-compat convert: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BridgeError as e:
        print(f"mcore-compat convert: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"wrote {result.path} (TP={result.layout.tp}, PP={result.layout.pp}, {result.layout.model_class} layout, "
          f"{len(result.layout.params)} parameters, {result.bytes / 1e9:.2f} GB in {result.seconds:.1f} s)")
    return EXIT_OK


def _run_torch_dist(args: argparse.Namespace) -> int:
    from bridge.errors import BridgeError
    from bridge.auto_bridge import AutoBridge
    from bridge.megatron_ckpt.offline import convert_to_torch_dist

    if (args.tp, args.pp) != (1, 1) or args.first_stage_layers or args.last_stage_layers or args.model_class != "gpt":
        print("mcore-compat convert: error: --format torch_dist takes no --tp/--pp/--*-stage-layers/--model-class: "
              "a torch_dist checkpoint loads at any TP x PP (dist_checkpointing reshards on load), and its GPT layout "
              "reads into HybridModel too (export-ckpt --model-class hybrid, load_megatron_model(model_class="
              "'hybrid')); for a Hybrid-layout one, import-ckpt --model-class hybrid", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = convert_to_torch_dist(args.hf_dir, args.out_dir, open_bridge=AutoBridge.from_hf_pretrained,
                                       dtype=args.dtype, overwrite=args.overwrite,
                                       trust_remote_code=args.trust_remote_code or None,
                                       progress=False if args.no_progress else None, should_pad_vocab=args.pad_vocab,
                                       revision=args.revision)
    except BridgeError as e:
        print(f"mcore-compat convert: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"wrote {result.path} (torch_dist, {result.tensors} parameters, {result.bytes / 1e9:.2f} GB in "
          f"{result.seconds:.1f} s)")
    return EXIT_OK
