"""Streaming, bounded-memory conversion between HF checkpoints and saved Megatron layouts.

* :mod:`~bridge.streaming.pieces`: a tensor as spans of files and tensors, copied file to file.
* :mod:`~bridge.streaming.files`: tensors of safetensors files as byte spans, counted; progress bars.
* :mod:`~bridge.streaming.shards`: one TP rank's shard as pieces of the HF tensors it needs.
* :mod:`~bridge.streaming.merges`: HF tensors as pieces of the TP shards they come from.
* :mod:`~bridge.streaming.plan`: what a conversion reads and writes, from headers and config only.
* :mod:`~bridge.streaming.hf_out`: HF shards written tensor by tensor at their final offsets.
* :mod:`~bridge.streaming.convert`, :mod:`~bridge.streaming.export`: the offline conversions
  (``mcore-compat convert`` / ``mcore-compat export``).
"""

from __future__ import annotations

from bridge.streaming.convert import ConversionResult, convert_checkpoint
from bridge.streaming.export import ExportResult, export_checkpoint
from bridge.streaming.files import ReadStats, SliceReader, SpanFiles
from bridge.streaming.pieces import FileSpan, Pieces
from bridge.streaming.shards import read_shard, shard_pieces

__all__ = [
    "ConversionResult",
    "ExportResult",
    "FileSpan",
    "Pieces",
    "ReadStats",
    "SliceReader",
    "SpanFiles",
    "convert_checkpoint",
    "export_checkpoint",
    "read_shard",
    "shard_pieces",
]
