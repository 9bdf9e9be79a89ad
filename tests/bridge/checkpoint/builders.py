"""Checkpoint builders for the checkpoint tests, independent of the code under test.

Valid files come from the reference ``safetensors`` library; hostile ones are assembled byte by byte.
:class:`OpenRecorder` proves which files were opened, through Python's ``open`` audit event (it sees
``open``, ``io.open`` and ``os.open`` alike).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

__all__ = ["OpenRecorder", "raw_safetensors", "recording_opens", "sample_tensors", "write_checkpoint"]


def raw_safetensors(header: Mapping[str, Any], data: bytes, *, length: int | None = None) -> bytes:
    """A safetensors file from a header dict and data bytes; ``length`` overrides the declared header size."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def sample_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """A few small tensors of different dtypes and ranks."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "model.embed_tokens.weight": torch.randn(8, 4, generator=gen).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": torch.randn(6, 4, generator=gen),
        "model.layers.0.input_layernorm.weight": torch.randn(4, generator=gen).half(),
        "model.positions": torch.arange(5, dtype=torch.int64),
        "lm_head.weight": torch.randn(8, 4, generator=gen),
    }


def write_checkpoint(
    directory: Path,
    shards: Mapping[str, Mapping[str, torch.Tensor]],
    *,
    weight_map: Mapping[str, str] | None = None,
    index: bool | None = None,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``shards`` (file -> tensors) with the reference library, plus an index and a config.json.

    The index is written when there are several shards (or ``index=True``); ``weight_map`` overrides the
    one derived from ``shards``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    derived: dict[str, str] = {}
    for file, tensors in shards.items():
        save_file(dict(tensors), str(directory / file), metadata={"format": "pt"})
        derived.update(dict.fromkeys(tensors, file))
    if index if index is not None else len(shards) > 1:
        body = {"metadata": {"total_size": 0}, "weight_map": dict(weight_map if weight_map is not None else derived)}
        (directory / "model.safetensors.index.json").write_text(json.dumps(body, indent=2))
    (directory / "config.json").write_text(json.dumps(dict(config or {"model_type": "llama"})))
    return directory


class OpenRecorder:
    """Paths opened while :func:`recording_opens` is active (absolute, symlinks not resolved)."""

    _installed = False
    _active: list[list[str]] = []

    @classmethod
    def _hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and cls._active and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            for sink in cls._active:
                sink.append(os.path.abspath(path))

    @classmethod
    def install(cls) -> None:
        if not cls._installed:
            sys.addaudithook(cls._hook)
            cls._installed = True


@contextlib.contextmanager
def recording_opens() -> Iterator[list[str]]:
    """Collect every path opened inside the block (audit hooks cannot be removed, so one hook serves all)."""
    OpenRecorder.install()
    sink: list[str] = []
    OpenRecorder._active.append(sink)
    try:
        yield sink
    finally:
        OpenRecorder._active.remove(sink)
