"""A safetensors writer that streams tensors one at a time (the header is written first).

``safetensors.torch.save_file`` needs every tensor of a file in memory at once. Resharding
writes each parameter's shards to many files as soon as they exist, so this writer takes the
names, dtypes and shapes up front, writes the header, then appends each tensor's bytes in the
declared order. The file is a standard safetensors file (read back with ``safe_open``).

Format: 8-byte little-endian header length, a JSON header padded with spaces to a multiple of
8 bytes, then the tensors' little-endian bytes back to back.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from bridge.errors import CheckpointError

__all__ = ["StreamingWriter", "TensorEntry"]

_CODES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}  # fmt: skip

#: ``(name, dtype, shape)`` of one tensor of a file.
TensorEntry = tuple[str, torch.dtype, tuple[int, ...]]


def _nbytes(dtype: torch.dtype, shape: Sequence[int]) -> int:
    count = 1
    for d in shape:
        count *= d
    return count * torch.empty((), dtype=dtype).element_size()


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
        header: dict[str, object] = {}
        if metadata:
            header["__metadata__"] = dict(metadata)
        offset = 0
        for name, dtype, shape in self._entries:
            if dtype not in _CODES:
                raise CheckpointError(
                    f"Cannot write {name!r}: dtype {dtype} has no safetensors code."
                )
            size = _nbytes(dtype, shape)
            header[name] = {
                "dtype": _CODES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + size],
            }
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close() / __exit__
        self._file.write(struct.pack("<Q", len(raw)))
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
