"""A tensor described by where its bytes are: spans of files and tensors in memory, in row-major order.

Converting between HF and Megatron layouts mostly moves contiguous byte ranges: a TP shard of a
column-parallel weight is a row range of the HF tensor, a fused QKV shard is a sequence of q, k and v
row ranges, a row-parallel shard is one piece of every row. :class:`Pieces` records such a tensor as
its parts (a :class:`FileSpan` of a file, a tensor, or a :class:`ColumnJoin` of tensors) whose
row-major bytes, one after the other, are the tensor's row-major bytes. Writers call
:meth:`Pieces.write_at`: spans are copied file to file inside the kernel (``copy_file_range``: no
user-space copy, no mapped pages, nothing in RSS), tensors are written from memory with ``pwritev``
(a column slice or a join row by row, so neither is copied first). Code that needs the data calls :meth:`Pieces.tensor` or
:meth:`Pieces.read_into`.
"""

from __future__ import annotations

import math
import mmap
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import torch

from bridge.errors import CheckpointError

__all__ = ["ColumnJoin", "FileSpan", "Part", "Pieces", "Scratch", "SourceFiles"]

_FALLBACK_CHUNK = 64 * 2**20


@dataclass(frozen=True)
class FileSpan:
    """``dtype``/``shape`` elements stored contiguously in ``path`` from byte ``offset`` on."""

    path: Path
    offset: int
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def numel(self) -> int:
        return math.prod(self.shape)

    def rows(self, start: int, stop: int) -> FileSpan:
        """Rows ``start:stop`` of dim 0 (clipped like a Python slice): still one span."""
        start, stop, _ = slice(start, stop).indices(self.shape[0])
        stop = max(start, stop)
        row = math.prod(self.shape[1:]) * self.dtype.itemsize
        return FileSpan(self.path, self.offset + start * row, self.dtype, (stop - start, *self.shape[1:]))

    def columns(self, start: int, stop: int) -> list[FileSpan]:
        """Columns ``start:stop`` of dim 1: one span per index of dim 0 (its row's piece)."""
        row = math.prod(self.shape[1:]) * self.dtype.itemsize
        inner = math.prod(self.shape[2:]) * self.dtype.itemsize
        shape = (1, stop - start, *self.shape[2:])
        return [FileSpan(self.path, self.offset + i * row + start * inner, self.dtype, shape)
                for i in range(self.shape[0])]

    def read(self) -> torch.Tensor:
        """The elements as a new tensor (positioned reads; nothing is mapped)."""
        return Pieces(self.dtype, self.shape, (self,)).tensor()


@dataclass(frozen=True)
class ColumnJoin:
    """``torch.cat(tensors, dim=1)`` without the copy: row ``i`` of every tensor in turn, for every ``i``."""

    tensors: tuple[torch.Tensor, ...]

    @property
    def dtype(self) -> torch.dtype:
        return self.tensors[0].dtype

    @property
    def shape(self) -> tuple[int, ...]:
        first = self.tensors[0].shape
        return (first[0], sum(t.shape[1] for t in self.tensors), *first[2:])

    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize

    def row_views(self) -> list[memoryview]:
        """The byte views to write, in order (one per row and tensor)."""
        rows = [_rows(t) for t in self.tensors]
        return [r[i] for i in range(self.shape[0]) for r in rows]

    def tensor(self) -> torch.Tensor:
        return torch.cat(list(self.tensors), dim=1)


#: One part of :class:`Pieces`.
Part = torch.Tensor | FileSpan | ColumnJoin

_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def _rows(tensor: torch.Tensor) -> list[memoryview]:
    """One byte view per index of dim 0 of a CPU tensor whose rows are each contiguous (no copy)."""
    rows = tensor.shape[0]
    if not rows:
        return []
    size = tensor.dtype.itemsize
    row = math.prod(tensor.shape[1:]) * size
    step = tensor.stride(0) * size
    span = torch.as_strided(tensor.detach(), ((rows - 1) * tensor.stride(0) + row // size,), (1,))
    base = memoryview(span.view(_INT_OF_SIZE[size]).numpy()).cast("B")
    return [base[i * step:i * step + row] for i in range(rows)]


def _views(tensor: torch.Tensor) -> list[memoryview]:
    """Byte views of a tensor in row-major order: itself if contiguous, else its rows if those are (a
    column slice), else a contiguous copy."""
    tensor = tensor.detach().to("cpu")
    if tensor.is_contiguous():
        return [memoryview(tensor.reshape(-1).view(torch.uint8).numpy())]
    if tensor.dim() >= 2 and tensor[0].is_contiguous():
        return _rows(tensor)
    return [memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())]


class SourceFiles:
    """File descriptors of span sources, each opened once while the object is in use."""

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}

    def fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def copy(self, span: FileSpan, fd: int, offset: int) -> None:
        """Copy the span's bytes to ``fd`` at ``offset`` (``copy_file_range``; plain reads and writes where
        the kernel or filesystem cannot)."""
        src, at, left = self.fd(span.path), span.offset, span.nbytes
        while left:
            try:
                count = os.copy_file_range(src, fd, left, at, offset)
            except OSError:
                count = os.pwrite(fd, os.pread(src, min(left, _FALLBACK_CHUNK), at), offset)
            if not count:
                raise CheckpointError(f"{span.path} ends before byte {span.offset + span.nbytes}; was it truncated?")
            at, offset, left = at + count, offset + count, left - count

    def read_into(self, span: FileSpan, target: memoryview) -> None:
        """Read the span's bytes into ``target`` (a writable byte view of exactly ``span.nbytes``)."""
        src, done = self.fd(span.path), 0
        while done < span.nbytes:
            count = os.preadv(src, [target[done:]], span.offset + done)
            if not count:
                raise CheckpointError(f"{span.path} ends before byte {span.offset + span.nbytes}; was it truncated?")
            done += count

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> SourceFiles:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Scratch:
    """One buffer reused for reads whose results are only needed until the next read.

    A fresh buffer per read costs the kernel a page fault and a zero fill for every 4 KiB page; a
    row-parallel weight read once per conversion step is exactly that pattern. With ``mapped=True`` the
    spans are mapped read-only instead (one map per span, dropped at the next call): a writer then copies
    straight from the page cache, one copy fewer; the resident pages are one read's at a time.
    """

    def __init__(self, *, mapped: bool = False) -> None:
        self._buffer = torch.empty(0, dtype=torch.uint8)
        self._mapped = mapped

    def read(self, spans: Sequence[FileSpan]) -> list[torch.Tensor]:
        """The spans' data, side by side in the buffer (or mapped): valid until the next call."""
        if self._mapped:
            return [_mapped(span) for span in spans]
        starts, total = [], 0
        for span in spans:
            total += -total % 8  # every dtype's alignment
            starts.append(total)
            total += span.nbytes
        if self._buffer.numel() < total:
            self._buffer = torch.empty(total, dtype=torch.uint8)
        out = []
        with SourceFiles() as files:
            for span, start in zip(spans, starts, strict=True):
                raw = self._buffer[start:start + span.nbytes]
                files.read_into(span, memoryview(raw.numpy()))
                out.append(raw.view(span.dtype).reshape(span.shape))
        return out


def _mapped(span: FileSpan) -> torch.Tensor:
    """A read-only map of the span (unmapped once the returned tensor and its views are gone)."""
    if not span.nbytes:
        return torch.empty(span.shape, dtype=span.dtype)
    start = span.offset - span.offset % mmap.ALLOCATIONGRANULARITY
    with open(span.path, "rb") as handle:
        region = mmap.mmap(handle.fileno(), span.offset + span.nbytes - start, access=mmap.ACCESS_READ,
                           offset=start)
    with warnings.catch_warnings():  # read-only on purpose: nothing writes through these tensors
        warnings.simplefilter("ignore", UserWarning)
        flat = torch.frombuffer(region, dtype=torch.uint8, count=span.nbytes, offset=span.offset - start)
    return flat.view(span.dtype).reshape(span.shape)


def _pwritev(fd: int, views: Sequence[memoryview], offset: int) -> None:
    """Write the views back to back from ``offset`` (``pwritev`` in batches; short writes resumed)."""
    pending = list(views)
    at = 0
    while at < len(pending):
        batch = pending[at:at + _IOV_MAX]
        count = os.pwritev(fd, batch, offset)
        offset += count
        if count == sum(map(len, batch)):
            at += len(batch)
            continue
        while count >= len(pending[at]):  # a short write: skip what was written, resume mid-view
            count -= len(pending[at])
            at += 1
        pending[at] = pending[at][count:]


@dataclass(frozen=True)
class Pieces:
    """A tensor of ``dtype`` and ``shape`` whose row-major bytes are its ``parts``' bytes, in order.

    Raises:
        CheckpointError: the parts' dtypes or total element count do not match (a planning bug).
    """

    dtype: torch.dtype
    shape: tuple[int, ...]
    parts: tuple[Part, ...] = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "parts", tuple(self.parts))
        if any(p.dtype != self.dtype for p in self.parts) or sum(p.numel() for p in self.parts) != self.numel():
            found = [(str(p.dtype), tuple(p.shape)) for p in self.parts[:6]]
            raise CheckpointError(
                f"pieces of a {self.dtype} {self.shape} tensor do not add up: parts {found}"
                f"{' ...' if len(self.parts) > 6 else ''} ({len(self.parts)} in all)"
            )

    @classmethod
    def of(cls, tensor: torch.Tensor) -> Pieces:
        """A tensor in memory as pieces (one part)."""
        return cls(tensor.dtype, tuple(tensor.shape), (tensor,))

    @classmethod
    def rows(cls, parts: Sequence[Part]) -> Pieces:
        """Parts stacked along dim 0 (their trailing dimensions agree)."""
        if len(parts) == 1:
            return cls(parts[0].dtype, tuple(parts[0].shape), tuple(parts))
        first = tuple(parts[0].shape)
        return cls(parts[0].dtype, (sum(p.shape[0] for p in parts), *first[1:]), tuple(parts))

    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize

    @property
    def spans(self) -> int:
        """How many parts are file spans (the rest are tensors in memory)."""
        return sum(isinstance(p, FileSpan) for p in self.parts)

    def read_into(self, target: torch.Tensor) -> None:
        """Fill ``target`` (same shape; any dtype and device, as ``copy_``): spans are read straight into a
        contiguous CPU ``target`` of this dtype."""
        if tuple(target.shape) != self.shape:
            raise CheckpointError(f"cannot read a {self.shape} tensor into one of shape {tuple(target.shape)}")
        if target.dtype != self.dtype or target.device.type != "cpu" or not target.is_contiguous():
            target.copy_(self.tensor())
            return
        flat = target.detach().view(-1)
        view = memoryview(flat.view(torch.uint8).numpy())
        at = 0
        with SourceFiles() as files:
            for part in self.parts:
                size = part.nbytes
                if isinstance(part, FileSpan):
                    files.read_into(part, view[at:at + size])
                else:
                    data = part.tensor() if isinstance(part, ColumnJoin) else part
                    flat[at // self.dtype.itemsize:(at + size) // self.dtype.itemsize].copy_(data.reshape(-1))
                at += size

    def tensor(self) -> torch.Tensor:
        """The data as one tensor (a single in-memory part of the right shape is returned as it is)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], (torch.Tensor, ColumnJoin)):
            part = self.parts[0]
            return (part.tensor() if isinstance(part, ColumnJoin) else part).reshape(self.shape)
        out = torch.empty(self.shape, dtype=self.dtype)
        self.read_into(out)
        return out

    def to(self, dtype: torch.dtype) -> Pieces:
        """The same values in ``dtype`` (read into memory and cast; no-op for the same dtype)."""
        return self if dtype == self.dtype else Pieces.of(self.tensor().to(dtype))

    def write_at(self, fd: int, offset: int) -> None:
        """Write the bytes to ``fd`` from ``offset`` on: spans copied file to file, tensors from memory
        (a column slice or a :class:`ColumnJoin` row by row with ``pwritev``, never copied first)."""
        with SourceFiles() as files:
            for part in self.parts:
                if not part.numel():
                    continue
                if isinstance(part, FileSpan):
                    files.copy(part, fd, offset)
                elif isinstance(part, ColumnJoin):
                    _pwritev(fd, part.row_views(), offset)
                else:
                    _pwritev(fd, _views(part), offset)
                offset += part.nbytes
