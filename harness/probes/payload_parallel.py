"""``tp2`` and ``pp2``: a tiny Llama loaded by two real processes, logits vs HF, export back bit-exact.

The payload process writes a 4-layer checkpoint (``pp2``: tied embeddings, so the output layer of the
last stage is filled from the embedding and the export must not write it), then spawns two workers
(``torch.multiprocessing``; ``gloo`` on CPU, ``nccl`` with one GPU per rank) on a free local port. Each
worker runs :func:`bridge.parity.run_layout_parity` under :class:`MegatronWarnings` and writes its
findings to a JSON file; the payload folds them into the ``llama`` row. The workers are ended after
``timeout_s`` at the latest.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.probes.payload_common import (
    FAILED, PASSED, SKIPPED, MegatronWarnings, Outcome, Row, describe_exception, merge_warnings,
)
from harness.probes.tiny_models import llama_checkpoint

__all__ = ["judge_layout", "probe_layout"]
_TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, initializer_range=0.02)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, hf: str, out: str, tp: int, pp: int, report_dir: str) -> None:
    """One rank (module level, so that ``spawn`` can import it)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    report: dict[str, Any] = {"rank": rank}
    with MegatronWarnings() as caught:
        try:
            import torch.distributed as dist

            from bridge.parity import run_layout_parity

            result = run_layout_parity(hf, out, tp=tp, pp=pp)
            if result.agreement is not None:
                report["max_abs_diff"] = result.agreement.max_abs_diff
                report["cosine"] = result.agreement.cosine_similarity
            if result.comparison is not None:
                report["export_bit_exact"] = result.comparison.bit_exact
                report["export_summary"] = result.comparison.summary()
            report["backend"] = dist.get_backend()
            dist.barrier()
            dist.destroy_process_group()
        except Exception as e:  # noqa: BLE001 - reported as data, the parent judges
            report["error"] = describe_exception(e)
    report["warnings"] = caught.as_json()
    Path(report_dir, f"rank{rank}.json").write_text(json.dumps(report), encoding="utf-8")


def _spawn(world: int, args: tuple[Any, ...], timeout_s: float) -> str | None:
    """Run ``world`` workers; None when all exit in time, else what went wrong."""
    import torch.multiprocessing as mp

    ctx = mp.start_processes(_worker, args=(world, *args), nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                return f"the {world} workers did not finish within {timeout_s:.0f} s"
    except Exception as e:  # noqa: BLE001 - a worker that died (signal, exit code)
        return describe_exception(e).splitlines()[0]
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.terminate()
    return None


def probe_layout(*, tp: int, pp: int, timeout_s: float = 240.0) -> Outcome:
    """The ``tp2`` / ``pp2`` test: one ``llama`` row, plus the workers' warnings folded into the notes."""
    import torch

    world = tp * pp
    if torch.cuda.is_available() and torch.cuda.device_count() < world:
        why = f"TP={tp} x PP={pp} needs {world} GPUs, found {torch.cuda.device_count()}"
        return Outcome({"llama": Row(SKIPPED, why)}, notes=(why,))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tied = pp > 1
    with tempfile.TemporaryDirectory(prefix=f"probe-tp{tp}pp{pp}-") as tmp:
        hf = llama_checkpoint(Path(tmp) / "hf", tie_word_embeddings=tied, **_TINY)
        reports = Path(tmp) / "reports"
        reports.mkdir()
        t0 = time.perf_counter()
        problem = _spawn(world, (_free_port(), str(hf), str(Path(tmp) / "export"), tp, pp, str(reports)), timeout_s)
        seconds = time.perf_counter() - t0
        ranks = [json.loads(p.read_text()) for p in sorted(reports.glob("rank*.json"))]
    return judge_layout(ranks, problem, tp=tp, pp=pp, tied=tied, seconds=seconds)


def judge_layout(ranks: list[dict[str, Any]], problem: str | None, *, tp: int, pp: int, tied: bool,
           seconds: float) -> Outcome:
    from bridge.parity import PARITY_ATOL

    layout = f"TP={tp} x PP={pp}{' (tied embeddings)' if tied else ''}"
    errors = [f"rank {r['rank']}: {r['error']}" for r in ranks if "error" in r]
    if problem:
        errors.append(problem)
    if len(ranks) < tp * pp and not problem:
        errors.append(f"only {len(ranks)} of {tp * pp} workers reported")
    diffs = [r["max_abs_diff"] for r in ranks if "max_abs_diff" in r]
    exports = [r for r in ranks if "export_bit_exact" in r]
    metrics: dict[str, Any] = {"tp": tp, "pp": pp, "world_size": tp * pp, "seconds": round(seconds, 2)}
    if diffs:
        metrics["max_abs_diff"] = max(diffs)
        metrics["cosine"] = min(r["cosine"] for r in ranks if "cosine" in r)
    if exports:
        metrics["export_bit_exact"] = exports[0]["export_bit_exact"]
    backend = next((r["backend"] for r in ranks if "backend" in r), "?")
    metrics["backend"] = backend
    notes: tuple[str, ...] = ()
    caught = tuple(merge_warnings(*(r.get("warnings", []) for r in ranks)))
    if errors:
        return Outcome({"llama": Row(FAILED, f"{layout}: " + "; ".join(errors), metrics)}, notes, caught)
    ok = diffs and exports and max(diffs) <= PARITY_ATOL and exports[0]["export_bit_exact"]
    text = (f"{layout} over {backend}: max_abs_diff {max(diffs) if diffs else float('nan'):.2e} "
            f"(<= {PARITY_ATOL:.0e}), export {exports[0]['export_summary'] if exports else 'not written'}")
    return Outcome({"llama": Row(PASSED if ok else FAILED, text, metrics)}, notes, caught)

