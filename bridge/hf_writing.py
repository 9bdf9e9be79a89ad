"""Writing an exported weight stream as an HF checkpoint directory (``save_hf_pretrained`` / ``save_hf_weights``).

Every rank drives the stream (its collectives gather TP/PP/EP shards); global rank 0 writes. When the
source checkpoint is known, its tensor names, dtypes and shapes are the plan: the writer places each
tensor at its final offset as it arrives, and the exported tensors keep the source's dtypes (or
``weight_dtype``). The directory appears atomically (:class:`~bridge.checkpoint.writer.HFCheckpointWriter`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from bridge._logging import get_logger

__all__ = ["write_hf_stream"]

log = get_logger("hf_writing")


def write_hf_stream(stream: Iterable[tuple[str, torch.Tensor]], out_dir: str | Path, *, source_dir: Path | None,
                    config: Mapping[str, Any] | None, companions: bool, overwrite: bool,
                    max_shard_size: int | str | None, durable: bool,
                    weight_dtype: torch.dtype | None = None) -> Path | None:
    """Drain ``stream`` on every rank and write it to ``out_dir`` on global rank 0 (its path there, else ``None``).

    ``companions``: also write ``config`` and copy the tokenizer and code files of ``source_dir``.
    """
    from bridge.checkpoint.reader import HFCheckpointReader
    from bridge.checkpoint.writer import HFCheckpointWriter

    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank != 0:
        for _ in stream:
            pass
        dist.barrier()
        return None
    source = HFCheckpointReader(source_dir) if source_dir is not None else None
    target_dtype: dict[str, torch.dtype] = {}
    expected = None
    if source is not None:
        target_dtype = {n: weight_dtype or source.dtype(n) for n in source.keys()}
        # The source's tensors are what the stream will yield: the writer can write each as it arrives.
        expected = {n: (target_dtype[n], source.shape(n)) for n in source.keys()}
    kwargs: dict[str, Any] = {"overwrite": overwrite, "durable": durable, "expected": expected,
                              "source_dir": source_dir if companions else None}
    if companions:
        kwargs["config"] = config
    if max_shard_size is not None:
        kwargs["max_shard_size"] = max_shard_size
    with HFCheckpointWriter(out_dir, **kwargs) as writer:
        for name, tensor in stream:
            dtype = target_dtype.get(name, weight_dtype or tensor.dtype)
            # The stream's tensors stay unchanged until they are written: no second copy needed (a
            # device tensor goes to disk through the writer's reused host slots).
            writer.add(name, tensor.to(dtype), copy=False)
            del tensor  # the stream gathers the next parameter on resuming: drop this one first
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
    log.info("exported HF %s to %s", "checkpoint" if companions else "weights", out_dir)
    return Path(out_dir)
