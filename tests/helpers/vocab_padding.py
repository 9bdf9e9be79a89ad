"""Megatron-Bridge's guide usage on a tiny HF checkpoint, with the vocabulary padding checks (issue 14).

:func:`run_case` builds the checkpoint at TP (in an existing process group), calls the model the way the guide
does (``model(input_ids, position_ids, attention_mask=None)``), compares :func:`forward_logits` with HF, makes
one padded id the best raw logit on purpose (its output row set to a large multiple of the last hidden state)
and checks that :func:`generate` still picks HF's token, then exports (padding included) and compares the
export with the source bit for bit. Run under torchrun it does every case given on the command line::

    torchrun --nproc-per-node=2 tests/helpers/vocab_padding.py --report R.json --tp 2 CASE_DIR[:pad] ...
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


def _make_a_padded_id_win(chunk: torch.nn.Module, ids: torch.Tensor, vocab: int, padded: int) -> bool:
    """Set the output row of the last padded id to 50 x the final hidden state of batch row 0's last position,
    so that its raw logit there beats every real one; returns whether this rank holds that row."""
    from megatron.core import parallel_state as ps

    from bridge.inference import forward_logits

    seen: dict[str, torch.Tensor] = {}
    hook = chunk.decoder.final_layernorm.register_forward_hook(lambda m, i, o: seen.setdefault("h", o))
    forward_logits([chunk], ids)
    hook.remove()
    weight = _output_weight(chunk)
    rows, rank = weight.shape[0], ps.get_tensor_model_parallel_rank()
    target = padded - 1
    if not rank * rows <= target < (rank + 1) * rows:
        return False
    with torch.no_grad():
        weight[target - rank * rows] = 50.0 * seen["h"][-1, 0]
    return True


def run_case(hf: Path, out: Path, *, tp: int, should_pad: bool = False, seq: int = 8) -> dict[str, Any]:
    """One model: widths, parity with HF, masked sampling, export (global rank 0 gets the full report)."""
    import torch.distributed as dist

    from bridge.auto_bridge import AutoBridge
    from bridge.inference import forward_logits, generate
    from bridge.parity import compare_checkpoints, hf_reference_logits, token_ids
    from bridge.runtime import reset_model_parallel

    reset_model_parallel()
    bridge = AutoBridge.from_hf_pretrained(hf)
    provider = bridge.to_megatron_provider(load_weights=True)
    provider.tensor_model_parallel_size = tp
    provider.should_pad_vocab = should_pad
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    vocab, padded = bridge.hf_config.vocab_size, provider.padded_vocab_size
    ids = token_ids(vocab, seq=seq)
    position_ids = torch.arange(seq).unsqueeze(0).expand_as(ids)
    raw = model[0](ids, position_ids, attention_mask=None)  # the guide's call
    ours = forward_logits(model, ids)  # no vocab_size: the model knows its padding
    ref = hf_reference_logits(hf, ids)
    report: dict[str, Any] = {
        "vocab": vocab, "padded": padded, "reason": provider.vocab_padding.reason,
        "raw_width": raw.shape[-1], "forward_width": ours.shape[-1],
        "max_abs_diff": (ours - ref).abs().max().item() if ours.shape == ref.shape else None,
    }
    if padded > vocab:
        held = _make_a_padded_id_win(model[0], ids, vocab, padded)
        raw = forward_logits(model, ids, vocab_size=padded)  # every column, padding included
        report["poisoned_rank_holds_row"] = held
        report["raw_argmax_is_padding"] = bool(raw[0, -1].argmax().item() >= vocab)
        report["forward_width_after"] = forward_logits(model, ids).shape[-1]
    new = generate(model, ids, max_new_tokens=2)[:, seq:]
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
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("cases", nargs="+", help="HF_DIR, or HF_DIR:pad for should_pad_vocab=True")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("bridge.providers").setLevel(logging.INFO)  # says why it pads
    dist.init_process_group("gloo")
    reports = []
    for i, case in enumerate(args.cases):
        path, _, flag = case.partition(":")
        rep = run_case(Path(path), args.out / f"case{i}", tp=args.tp, should_pad=flag == "pad")
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, rep)
        merged = {**gathered[0], "poisoned_rank_holds_row": any(g.get("poisoned_rank_holds_row") for g in gathered),
                  "raw_argmax_is_padding": any(g.get("raw_argmax_is_padding") for g in gathered)}
        reports.append({"case": case, **merged})
    if dist.get_rank() == 0:
        args.report.write_text(json.dumps(reports, indent=1))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
