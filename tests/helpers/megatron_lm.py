"""Megatron-LM's own ``load_checkpoint`` / ``save_checkpoint`` on a tiny model, in a subprocess per release.

Run with a megatron-core wheel that ships ``megatron.training`` (0.17+) first on ``PYTHONPATH``::

    python -m tests.helpers.megatron_lm load MEGATRON_DIR HF_DIR REPORT   # finetune-load our checkpoint
    python -m tests.helpers.megatron_lm save HF_DIR MEGATRON_DIR REPORT   # write one with save_checkpoint

The model is built by the bridge (local spec, CPU); Megatron-LM's global ``args`` come from its own
``parse_args`` with the flags a user would pass. ``load`` compares the logits after loading with HF's.
On Python 3.11 ``megatron.training`` needs ``typing.override``: shimmed from ``typing_extensions`` here,
in this test process only (the product never does this).
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path

import typing_extensions

if not hasattr(typing, "override"):
    typing.override = typing_extensions.override  # test-process-only shim for Python 3.11


def _model_flags(provider) -> list[str]:
    return ["--num-layers", str(provider.num_layers), "--hidden-size", str(provider.hidden_size),
            "--ffn-hidden-size", str(provider.ffn_hidden_size), "--num-attention-heads",
            str(provider.num_attention_heads), "--group-query-attention", "--num-query-groups",
            str(provider.query_groups), "--seq-length", "128", "--max-position-embeddings", "128",
            "--micro-batch-size", "1", "--swiglu", "--normalization", "RMSNorm", "--disable-bias-linear",
            "--position-embedding-type", "rope", "--untie-embeddings-and-output-weights",
            "--ckpt-format", "torch_dist", "--no-save-optim", "--no-save-rng", "--use-cpu-initialization"]


def _megatron_args(flags: list[str]):
    from megatron.training import arguments, global_vars

    argv, sys.argv = sys.argv, ["megatron-lm", *flags]
    try:
        args = arguments.parse_args(ignore_unknown_args=False)
    finally:
        sys.argv = argv
    args.world_size, args.rank, args.data_parallel_size = 1, 0, 1
    args.use_dist_ckpt = True
    global_vars.set_args(args)
    return args


def _device_mode():
    """bridge.cpu's device mode on a machine without CUDA; nothing on a GPU machine."""
    import contextlib

    import torch

    from bridge import cpu

    return contextlib.nullcontext() if torch.cuda.is_available() else cpu.cpu_device_mode()


def _build(hf: Path, *, load_weights: bool):
    from bridge.auto_bridge import AutoBridge

    bridge = AutoBridge.from_hf_pretrained(hf)
    provider = bridge.to_megatron_provider(load_weights=load_weights)
    provider.model_class = "gpt"
    return provider, provider.provide_distributed_model()


def load(megatron_dir: Path, hf: Path, report: Path) -> None:
    import torch

    from bridge.inference import forward_logits
    from megatron.training.checkpointing import load_checkpoint
    from tests.helpers.tiny import hf_logits

    provider, model = _build(hf, load_weights=False)
    ids = torch.randint(0, provider.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    want = hf_logits(hf, ids)
    before = (forward_logits(model, ids).cpu() - want).abs().max().item()
    _megatron_args(_model_flags(provider) + ["--load", str(megatron_dir), "--finetune", "--no-load-optim",
                                             "--no-load-rng", "--exit-on-missing-checkpoint"])
    with _device_mode():
        iteration, _ = load_checkpoint(model, None, None, strict=True)
    after = (forward_logits(model, ids).cpu() - want).abs().max().item()
    report.write_text(json.dumps({"iteration": iteration, "diff_before": before, "diff_after": after}))


def save(hf: Path, megatron_dir: Path, report: Path) -> None:
    from unittest import mock

    import torch

    from bridge import cpu
    from megatron.training.checkpointing import save_checkpoint

    provider, model = _build(hf, load_weights=True)
    _megatron_args(_model_flags(provider) + ["--save", str(megatron_dir)])
    # save_checkpoint collects the CUDA RNG state even with --no-save-rng; this CPU-only torch has none.
    # A test-process-only stand-in (torch's, not MCore's): the state is not saved (--no-save-rng).
    if torch.cuda.is_available():
        save_checkpoint(7, model, None, None, 0)
    else:
        with cpu.cpu_device_mode(), mock.patch.object(torch.cuda, "get_rng_state", torch.get_rng_state):
            save_checkpoint(7, model, None, None, 0)
    report.write_text(json.dumps({"saved": sorted(p.name for p in megatron_dir.iterdir())}))


if __name__ == "__main__":
    mode, first, second, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    {"load": load, "save": save}[mode](first, second, out)
