"""A safetensors writer that streams tensors one at a time (the header is written first).

``safetensors.torch.save_file`` needs every tensor of a file in memory at once. Resharding
writes each parameter's shards to many files as soon as they exist, so this writer takes the
names, dtypes and shapes up front, writes the header, then appends each tensor's bytes in the
declared order. The file is a standard safetensors file (read back with ``safe_open``).

Format: the header of :func:`bridge.checkpoint.format.encode_header` (the one encoder), then the
tensors' little-endian bytes back to back.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from bridge.checkpoint.format import encode_header
from bridge.errors import CheckpointError

__all__ = ["StreamingWriter", "TensorEntry"]

#: ``(name, dtype, shape)`` of one tensor of a file.
TensorEntry = tuple[str, torch.dtype, tuple[int, ...]]


def _nbytes(dtype: torch.dtype, shape: Sequence[int]) -> int:
    return math.prod(shape) * dtype.itemsize


class StreamingWriter:
    """Write one safetensors file whose tensors arrive one by one, in the declared order."""

    def __init__(
        self, path: Path, entries: Sequence[TensorEntry], metadata: Mapping[str, str] | None = None
    ) -> None:
        if sys.byteorder != "little":
            raise CheckpointError("Streaming safetensors writing needs a little-endian host.")
        self.path = path
        self._entries = list(entries)
        self._next = 0
        raw = encode_header(self._entries, dict(metadata or {}))  # CheckpointError for a dtype with no code
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close() / __exit__
        self._file.write(raw)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append ``tensor``, which must be the next declared entry (same name, dtype, shape)."""
        if self._next >= len(self._entries):
            raise CheckpointError(f"{self.path}: {name!r} was not declared (all entries written).")
        want_name, dtype, shape = self._entries[self._next]
        if (name, tensor.dtype, tuple(tensor.shape)) != (want_name, dtype, tuple(shape)):
            raise CheckpointError(
                f"{self.path}: expected {want_name!r} {dtype} {tuple(shape)} next, got {name!r} "
                f"{tensor.dtype} {tuple(tensor.shape)}."
            )
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        self._file.write(data.numpy().data)
        self._next += 1

    def write_parts(self, name: str, data: Any) -> None:
        """Append the next declared entry from ``data``, which writes its own bytes with positioned I/O.

        ``data`` has ``dtype``, ``shape`` and ``write_at(fd, offset)`` (e.g.
        :class:`bridge.streaming.pieces.Pieces`: a tensor made of file spans and tensors, never
        assembled in memory).
        """
        if self._next >= len(self._entries):
            raise CheckpointError(f"{self.path}: {name!r} was not declared (all entries written).")
        want_name, dtype, shape = self._entries[self._next]
        if (name, data.dtype, tuple(data.shape)) != (want_name, dtype, tuple(shape)):
            raise CheckpointError(
                f"{self.path}: expected {want_name!r} {dtype} {tuple(shape)} next, got {name!r} "
                f"{data.dtype} {tuple(data.shape)}."
            )
        self._file.flush()
        at = self._file.tell()
        data.write_at(self._file.fileno(), at)
        self._file.seek(at + _nbytes(dtype, shape))
        self._next += 1

    def close(self) -> None:
        """Close the file; raises if some declared tensor was never written."""
        self._file.close()
        if self._next != len(self._entries):
            missing = [e[0] for e in self._entries[self._next :]]
            raise CheckpointError(
                f"{self.path}: {len(missing)} tensor(s) never written, e.g. {missing[:3]}."
            )

    def __enter__(self) -> StreamingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()
