"""Offline resharding of a saved Megatron layout to another TP x PP layout (no HF, no MCore).

One parameter at a time: read its TP shards from the source files (lazily, through
``safe_open``), merge them, split for the target layout and append each target shard to its
rank file (:class:`~bridge.parallel._safetensors.StreamingWriter`). Peak memory is about three
times the largest parameter, whatever the model size. Tied copies in the source are checked
against their source parameter; the target gets the copies its layout needs. The target
directory appears atomically, complete, or not at all.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from bridge._logging import get_logger
from bridge.checkpoint.atomic import AtomicDirectory
from bridge.errors import CheckpointError, ParallelLayoutError
from bridge.parallel._common import bitwise_equal
from bridge.parallel._safetensors import StreamingWriter
from bridge.parallel.layout_io import (
    check_rank_files,
    rank_file_name,
    read_layout,
    shard_entries,
    write_layout_json,
)
from bridge.parallel.spec import ParallelLayout
from bridge.parallel.state import Rank, merge_param, placements, split_param

__all__ = ["reshard"]

log = get_logger("parallel.reshard")


def _read_full(
    name: str, layout: ParallelLayout, places: list[tuple[int, str]], handles: dict[Rank, Any]
) -> torch.Tensor:
    spec = layout.params[name]
    merged: torch.Tensor | None = None
    for stage, local in places:
        shards = [handles[(r, stage)].get_tensor(local) for r in range(layout.tp)]
        full = merge_param(name, shards, spec)
        del shards
        if merged is None:
            merged = full
        elif not bitwise_equal(merged, full):
            raise ParallelLayoutError(
                f"Source stage {stage}'s {local!r} should be a tied copy of {name!r} but differs "
                "from it; the checkpoint's embedding group was out of sync."
            )
    assert merged is not None
    return merged


def reshard(
    src_dir: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    *,
    tp: int,
    pp: int,
    first_stage_layers: int | None = None,
    last_stage_layers: int | None = None,
    overwrite: bool = False,
) -> ParallelLayout:
    """Rewrite the saved layout in ``src_dir`` at ``tp`` x ``pp`` into ``dst_dir``.

    Args:
        src_dir: a directory written by :func:`~bridge.parallel.layout_io.save_layout` or by
            this function.
        dst_dir: the new directory; must not exist unless ``overwrite``.
        tp, pp: target tensor- and pipeline-parallel sizes.
        first_stage_layers, last_stage_layers: MCore's ``num_layers_in_first_pipeline_stage`` /
            ``num_layers_in_last_pipeline_stage`` for the target (``None``: even split).
        overwrite: replace an existing ``dst_dir`` (only once the new one is complete).

    Returns:
        The target layout (as written to ``dst_dir/layout.json``).

    Raises:
        ParallelLayoutError: the target layout does not fit the model (raised before writing).
        CheckpointError: the source is incomplete or inconsistent, or ``dst_dir`` exists.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if src_dir.resolve() == dst_dir.resolve():
        raise CheckpointError(
            f"Cannot reshard {src_dir} onto itself; choose another target directory."
        )
    src = read_layout(src_dir)
    check_rank_files(src_dir, src)
    dst = src.with_parallelism(
        tp=tp, pp=pp, first_stage_layers=first_stage_layers, last_stage_layers=last_stage_layers
    )
    entries = shard_entries(dst)  # validates the target layout before any tensor is read
    src_places, dst_places = placements(src), placements(dst)
    started = time.perf_counter()
    with AtomicDirectory(dst_dir, overwrite=overwrite) as tmp, ExitStack() as stack:
        handles = {
            rank: stack.enter_context(
                safe_open(str(src_dir / rank_file_name(*rank)), framework="pt")
            )
            for rank in src.ranks()
        }
        writers = {
            rank: stack.enter_context(
                StreamingWriter(
                    tmp / rank_file_name(*rank),
                    entries[rank],
                    {"format": "pt", "tp_rank": str(rank[0]), "pp_rank": str(rank[1])},
                )
            )
            for rank in dst.ranks()
        }
        for name in dst.params:
            full = _read_full(name, src, src_places[name], handles)
            shards = split_param(name, full, dst.params[name], tp=dst.tp)
            for stage, local in dst_places[name]:
                for tp_rank, shard in enumerate(shards):
                    writers[(tp_rank, stage)].write(local, shard)
            del full, shards
        for writer in writers.values():
            writer.close()
        write_layout_json(tmp, dst)
    log.info(
        "resharded %s (tp=%d, pp=%d) -> %s (tp=%d, pp=%d): %d parameters in %.2f s",
        src_dir,
        src.tp,
        src.pp,
        dst_dir,
        dst.tp,
        dst.pp,
        len(dst.params),
        time.perf_counter() - started,
    )
    return dst
