"""Hugging Face checkpoint I/O: a validated lazy reader and a sharded, atomic writer of safetensors."""

from __future__ import annotations

from bridge.checkpoint.checks import WeightReport, compare_weights
from bridge.checkpoint.reader import HFCheckpointReader, MissingTensorError
from bridge.checkpoint.writer import DEFAULT_MAX_SHARD_SIZE, HFCheckpointWriter, parse_size

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "HFCheckpointReader",
    "HFCheckpointWriter",
    "MissingTensorError",
    "WeightReport",
    "compare_weights",
    "parse_size",
]
