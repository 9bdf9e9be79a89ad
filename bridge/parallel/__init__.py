"""Tensor/pipeline-parallel sharding of full Megatron tensors: pure functions, no torch.distributed.

* :mod:`~bridge.parallel.tp`, :mod:`~bridge.parallel.vocab`, :mod:`~bridge.parallel.expert`:
  split/merge pairs per sharding kind; :mod:`~bridge.parallel.kinds`: their registry and the
  :func:`split` / :func:`merge` dispatch.
* :mod:`~bridge.parallel.pp`: :class:`PipelineLayout` (stage ownership, local <-> global names).
* :mod:`~bridge.parallel.spec`, :mod:`~bridge.parallel.state`: whole-model split and merge;
  :mod:`~bridge.parallel.fit`: which TP sizes fit a whole model.
* :mod:`~bridge.parallel.layout_io`, :mod:`~bridge.parallel.reshard`: the saved layout on disk
  and offline resharding.
"""

from __future__ import annotations

from bridge.parallel.fit import fitting_tps
from bridge.parallel.kinds import KINDS, ShardingKind, merge, shard_shape, split
from bridge.parallel.layout_io import load_full_state, load_layout, read_layout, save_layout
from bridge.parallel.pp import PipelineLayout, StageCopy
from bridge.parallel.reshard import reshard
from bridge.parallel.spec import ParallelLayout, ParamSpec
from bridge.parallel.state import (
    layout_for,
    merge_shards,
    merge_state,
    split_full_state,
    split_state,
)
from bridge.parallel.vocab import padded_vocab_size

__all__ = [
    "KINDS",
    "ParallelLayout",
    "ParamSpec",
    "PipelineLayout",
    "ShardingKind",
    "StageCopy",
    "fitting_tps",
    "layout_for",
    "load_full_state",
    "load_layout",
    "merge",
    "merge_shards",
    "merge_state",
    "padded_vocab_size",
    "read_layout",
    "reshard",
    "save_layout",
    "shard_shape",
    "split",
    "split_full_state",
    "split_state",
]
