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
import os
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import torch

from bridge.errors import CheckpointError

__all__ = ["FileSpan", "StreamingWriter", "TensorEntry", "check_rows", "copy_span", "row_bytes"]

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


@dataclass(frozen=True)
class FileSpan:
    """Rows of a tensor lying contiguously in a file: ``shape``/``dtype`` of the rows, first byte at ``offset``.

    Writers copy a span file to file (``copy_file_range``: no user-space copy, no mapped pages);
    :meth:`read` loads it when a tensor is needed. Dim-0 slices of a span are spans (:meth:`rows`).
    """

    path: Path
    offset: int
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return _nbytes(self.dtype, self.shape)

    def numel(self) -> int:
        return self.nbytes // self.dtype.itemsize

    def dim(self) -> int:
        return len(self.shape)

    def rows(self, start: int, stop: int) -> FileSpan:
        """Rows ``start:stop`` (clipped like a Python slice)."""
        start, stop, _ = slice(start, stop).indices(self.shape[0])
        stop = max(start, stop)
        row = _nbytes(self.dtype, self.shape[1:])
        return FileSpan(self.path, self.offset + start * row, self.dtype, (stop - start, *self.shape[1:]))

    def read(self) -> torch.Tensor:
        """The rows as a new tensor (positioned reads, nothing mapped)."""
        out = torch.empty(self.shape, dtype=self.dtype)
        self.read_into(out)
        return out

    def read_into(self, target: torch.Tensor) -> None:
        """Read the rows straight into ``target``: a contiguous CPU tensor of the span's dtype and shape."""
        if target.dtype != self.dtype or tuple(target.shape) != self.shape or not target.is_contiguous() \
                or target.device.type != "cpu":
            raise CheckpointError(
                f"cannot read {self.dtype} {self.shape} from {self.path} into a {target.dtype} "
                f"{tuple(target.shape)} tensor on {target.device} (contiguous: {target.is_contiguous()})"
            )
        if not self.nbytes:
            return
        view, done = memoryview(target.detach().view(-1).view(torch.uint8).numpy()), 0
        with open(self.path, "rb", buffering=0) as handle:
            while done < self.nbytes:
                count = os.preadv(handle.fileno(), [view[done:]], self.offset + done)
                if not count:
                    raise CheckpointError(f"{self.path}: ends before byte {self.offset + self.nbytes}; truncated?")
                done += count


def copy_span(span: FileSpan, fd: int, offset: int) -> None:
    """Copy ``span``'s bytes into file descriptor ``fd`` at ``offset``, inside the kernel where it can."""
    with open(span.path, "rb", buffering=0) as source:
        src, at, left = source.fileno(), span.offset, span.nbytes
        while left:
            try:
                count = os.copy_file_range(src, fd, left, at, offset)
            except OSError:  # another filesystem, or no copy_file_range: plain reads and writes
                count = os.pwrite(fd, os.pread(src, min(left, 64 * 2**20), at), offset)
            if not count:
                raise CheckpointError(f"{span.path}: ends before byte {span.offset + span.nbytes}; truncated?")
            at, offset, left = at + count, offset + count, left - count


def check_rows(
    where: object, name: str, parts: Sequence[torch.Tensor | FileSpan], dtype: torch.dtype, shape: Sequence[int]
) -> None:
    """Check that ``parts``, concatenated along dim 0, make a tensor of ``dtype`` and ``shape``."""
    shape = tuple(shape)
    found = [(p.dtype, tuple(p.shape)) for p in parts]  # tensors and FileSpans alike
    if not shape:
        ok = len(parts) == 1 and found[0] == (dtype, ())
    else:
        ok = bool(parts) and all(d == dtype and s[1:] == shape[1:] and len(s) == len(shape) for d, s in found) \
            and sum(s[0] for _, s in found) == shape[0]
    if not ok:
        raise CheckpointError(
            f"{where}: {name!r} is declared {dtype} {shape} but its row blocks are "
            f"{[(str(d), s) for d, s in found][:6]}{' ...' if len(found) > 6 else ''}."
        )


def row_bytes(part: torch.Tensor) -> memoryview:
    """The bytes of ``part`` (made contiguous, on CPU) as a flat memoryview, without a copy when possible."""
    return memoryview(part.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())


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

    def write_rows(self, name: str, parts: Sequence[torch.Tensor | FileSpan]) -> None:
        """Append the next declared entry given as row blocks (tensors or file spans): ``torch.cat(parts)``
        is never built, and spans are copied file to file."""
        if self._next >= len(self._entries):
            raise CheckpointError(f"{self.path}: {name!r} was not declared (all entries written).")
        want_name, dtype, shape = self._entries[self._next]
        if name != want_name:
            raise CheckpointError(f"{self.path}: expected {want_name!r} next, got {name!r}.")
        check_rows(self.path, name, parts, dtype, shape)
        for part in parts:
            if not part.numel():
                continue
            if isinstance(part, FileSpan):
                self._file.flush()
                at = self._file.tell()
                copy_span(part, self._file.fileno(), at)
                self._file.seek(at + part.nbytes)
            else:
                self._file.write(row_bytes(part))
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
