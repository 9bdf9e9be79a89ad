"""Megatron-Bridge's guide usage on a tiny HF checkpoint, with the vocabulary padding checks (issue 14).

:func:`run_case` builds the checkpoint at TP (in an existing process group), calls the model the way the guide
does (``model(input_ids, position_ids, attention_mask=None)``), compares :func:`forward_logits` with HF, makes
one padded id the best raw logit on purpose (its output row set to a large multiple of the last hidden state)
and checks that :func:`generate` still picks HF's token, then exports (padding included) and compares the
export with the source bit for bit. Run under torchrun it does every case given on the command line::

    torchrun --nproc-per-node=2 tests/helpers/vocab_padding.py --report R.json --tp 2 [--pp 1] CASE_DIR[:pad] ...
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["run_case"]


def _output_weight(chunk: torch.nn.Module) -> torch.Tensor:
    if chunk.share_embeddings_and_output_weights:
        return chunk.shared_embedding_or_output_weight()
    return chunk.output_layer.weight


def _make_a_padded_id_win(model: list[torch.nn.Module], ids: torch.Tensor, vocab: int, padded: int) -> bool:
    """Set the output row of the last padded id to 50 x the final hidden state of batch row 0's last position,
    so that its raw logit there beats every real one; returns whether this rank holds that row. Every rank calls
    it (a forward pass runs through every pipeline stage)."""
    from megatron.core import parallel_state as ps

    from bridge.inference import forward_logits

    chunk, last = model[0], ps.is_pipeline_last_stage()
    seen: dict[str, torch.Tensor] = {}
    hook = chunk.decoder.final_layernorm.register_forward_hook(lambda m, i, o: seen.setdefault("h", o)) if last else None
    forward_logits(model, ids)
    if hook is None:
        return False
    hook.remove()
    weight = _output_weight(chunk)
    rows, rank = weight.shape[0], ps.get_tensor_model_parallel_rank()
    target = padded - 1
    if not rank * rows <= target < (rank + 1) * rows:
        return False
    with torch.no_grad():
        weight[target - rank * rows] = 50.0 * seen["h"][-1, 0]
    return True


def run_case(hf: Path, out: Path, *, tp: int, pp: int = 1, should_pad: bool = False, seq: int = 8) -> dict[str, Any]:
    """One model: widths, parity with HF, masked sampling, export. Every rank calls it; the last pipeline stage
    reports the logits, global rank 0 the export."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from bridge.auto_bridge import AutoBridge
    from bridge.inference import forward_logits, generate
    from bridge.parity import compare_checkpoints, hf_reference_logits, token_ids
    from bridge.runtime import reset_model_parallel

    reset_model_parallel()
    bridge = AutoBridge.from_hf_pretrained(hf)
    provider = bridge.to_megatron_provider(load_weights=True)
    provider.tensor_model_parallel_size = tp
    provider.pipeline_model_parallel_size = pp
    provider.should_pad_vocab = should_pad
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    last = ps.is_pipeline_last_stage()
    vocab, padded = bridge.hf_config.vocab_size, provider.padded_vocab_size
    ids = token_ids(vocab, seq=seq)
    ref = hf_reference_logits(hf, ids)
    report: dict[str, Any] = {"vocab": vocab, "padded": padded, "reason": provider.vocab_padding.reason}
    if pp == 1:  # the guide's call (one stage holds the whole model)
        position_ids = torch.arange(seq).unsqueeze(0).expand_as(ids)
        report["raw_width"] = model[0](ids, position_ids, attention_mask=None).shape[-1]
    raw = forward_logits(model, ids, vocab_size=padded)  # every column
    ours = forward_logits(model, ids)  # no vocab_size: the model knows its padding
    if last:
        report["raw_width"] = report.get("raw_width", raw.shape[-1])
        report["forward_width"] = ours.shape[-1]
        report["max_abs_diff"] = (ours - ref).abs().max().item() if ours.shape == ref.shape else None
    if padded > vocab:
        report["poisoned_rank_holds_row"] = _make_a_padded_id_win(model, ids, vocab, padded)
        raw = forward_logits(model, ids, vocab_size=padded)
        after = forward_logits(model, ids)
        if last:
            report["raw_argmax_is_padding"] = bool(raw[0, -1].argmax().item() >= vocab)
            report["forward_width_after"] = after.shape[-1]
    new = generate(model, ids, max_new_tokens=2)[:, seq:]  # the same ids on every rank
    report["generated_max"] = int(new.max())
    report["first_token_is_hf_greedy"] = bool(torch.equal(new[:, 0], ref[:, -1].argmax(-1)))
    bridge.save_hf_pretrained(model, out, overwrite=True)  # the poisoned padding row must not leak
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        report["export"] = compare_checkpoints(hf, out).summary()
        report["export_bit_exact"] = compare_checkpoints(hf, out).bit_exact
    return report


def main(argv: list[str] | None = None) -> int:
    import torch.distributed as dist

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--pp", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("cases", nargs="+", help="HF_DIR, or HF_DIR:pad for should_pad_vocab=True")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("bridge.providers").setLevel(logging.INFO)  # says why it pads
    dist.init_process_group("gloo")
    reports = []
    for i, case in enumerate(args.cases):
        path, _, flag = case.partition(":")
        rep = run_case(Path(path), args.out / f"case{i}", tp=args.tp, pp=args.pp, should_pad=flag == "pad")
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, rep)
        merged: dict[str, Any] = {"case": case}
        for part in gathered:  # the last stage's logits, rank 0's export; a flag holds if some rank saw it
            for key, value in part.items():
                if key in ("poisoned_rank_holds_row", "raw_argmax_is_padding"):
                    merged[key] = merged.get(key, False) or value
                else:
                    merged.setdefault(key, value)
        reports.append(merged)
    if dist.get_rank() == 0:
        args.report.write_text(json.dumps(reports, indent=1))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
