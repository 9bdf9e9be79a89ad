"""The tensors of a ``torch_dist`` checkpoint as byte spans of its ``.distcp`` files, nothing loaded.

PyTorch DCP stores each chunk of a tensor as one ``torch.save`` record (a zip archive whose ``data/0``
entry holds the storage bytes, stored uncompressed) at ``(file, offset, length)`` in a ``.distcp`` file;
the index (``.metadata``) lists each tensor's global size, dtype and chunks. So a chunk's elements are a
:class:`~bridge.streaming.pieces.FileSpan` found from the record's zip directory and pickled header
alone (``torch.load`` onto the meta device reads no data), and a layer's slice of a stacked MCore key
(``[num_layers, ...]``) is that span's row. :class:`DistcpTensors` hands them out, assembling a slice that
several chunks tile (a checkpoint written at TP > 1) in memory.

:func:`record_data_offset` is the one reader of a record's layout: the offline writer uses it to find where
to copy tensor bytes into the records it writes.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bridge import compat
from bridge.errors import CheckpointError, UnsupportedFeatureError
from bridge.streaming.pieces import FileSpan, Part

__all__ = ["DistcpTensors", "record_data_offset", "record_span"]

_LOCAL_HEADER = 0x04034B50


class _Window(io.RawIOBase):
    """Bytes ``start:start + length`` of an open file, as a seekable read-only file (positioned reads)."""

    def __init__(self, fd: int, start: int, length: int) -> None:
        self._fd, self._start, self._length, self._pos = fd, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self._length - self._pos))
        data = os.pread(self._fd, count, self._start + self._pos)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


def record_data_offset(fd: int, start: int, length: int, *, nbytes: int | None = None, where: str = "") -> int:
    """The file offset of the storage bytes of the one-storage ``torch.save`` record at ``start:start + length``
    of ``fd``: its ``<archive>/data/0`` zip entry, past the local header (30 bytes, the name, and the extra
    field holding the 64-byte alignment). ``nbytes``, when given, is the entry's expected size."""
    try:
        with zipfile.ZipFile(_Window(fd, start, length)) as archive:
            entries = [i for i in archive.infolist() if i.filename.endswith("/data/0")]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{where or 'a .distcp file'}: the record at byte {start} ({length} bytes) is not a "
                              f"torch.save archive ({exc}); the checkpoint is damaged: re-copy or re-save it") from None
    header = os.pread(fd, 30, start + entries[0].header_offset) if len(entries) == 1 else b""
    sig, name_len, extra_len = struct.unpack("<I22xHH", header) if len(header) == 30 else (0, 0, 0)
    info = entries[0] if entries else None
    if info is None or sig != _LOCAL_HEADER or info.compress_type != zipfile.ZIP_STORED or (
            nbytes is not None and info.file_size != nbytes):
        # Not an invariant of ours but of torch.save's record layout; checked even under ``python -O``.
        raise CheckpointError(
            f"{where or 'a .distcp file'}: the torch.save record at byte {start} is not laid out as expected "
            f"(one stored data/0 entry{f' of {nbytes} bytes' if nbytes is not None else ''}; found "
            f"{[(i.filename, i.file_size) for i in entries]} behind local header signature {sig:#x}); read it "
            "through a built model instead (export_ckpt(..., offline=False)) and report this with your torch version"
        )
    return start + info.header_offset + 30 + name_len + extra_len


def record_span(path: Path, start: int, length: int) -> FileSpan:
    """The tensor of the record at ``start:start + length`` of ``path`` as a span (contiguous, little-endian)."""
    with open(path, "rb") as handle:
        fd = handle.fileno()
        try:
            meta = torch.load(io.BufferedReader(_Window(fd, start, length)), map_location="meta", weights_only=True)
        except Exception as exc:  # a damaged pickle raises anything from EOFError to UnpicklingError
            raise CheckpointError(f"{path}: the record at byte {start} cannot be read ({type(exc).__name__}: {exc}); "
                                  "the checkpoint is damaged: re-copy or re-save it") from None
        if not isinstance(meta, torch.Tensor):
            raise CheckpointError(f"{path}: the record at byte {start} holds a {type(meta).__name__}, not a tensor")
        data = record_data_offset(fd, start, length, where=str(path))
    contiguous = meta.is_contiguous() or meta.numel() <= 1
    if not contiguous:
        raise CheckpointError(f"{path}: the tensor at byte {start} is stored with strides {meta.stride()}; read it "
                              "through a built model instead (export_ckpt(..., offline=False))")
    return FileSpan(path, data + meta.storage_offset() * meta.dtype.itemsize, meta.dtype, tuple(meta.shape))


@dataclass(frozen=True)
class _Chunk:
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    file: str
    start: int
    length: int


class DistcpTensors:
    """The tensors of one iteration directory by MCore sharded key, as spans (``index``: DCP's ``Metadata``).

    A key's chunks are looked up when the key is first read, so entries the caller never reads (optimizer state)
    cannot stop it."""

    def __init__(self, iteration_dir: Path, index: Any) -> None:
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        self.directory = Path(iteration_dir)
        self._meta = {k: m for k, m in index.state_dict_metadata.items() if isinstance(m, TensorStorageMetadata)}
        # a 0-d tensor's chunk is stored under offset None by some writers and () by others
        self._storage = {(i.fqn, tuple(i.offset) if i.offset is not None else ()): s
                         for i, s in index.storage_data.items()}
        self._chunks: dict[str, list[_Chunk]] = {}

    def _chunks_of(self, key: str) -> list[_Chunk]:
        found = self._chunks.get(key)
        if found is not None:
            return found
        transforms = compat.has_feature("dcp_storage_transforms")
        chunks = []
        for chunk in self._meta[key].chunks:
            info = self._storage.get((key, tuple(chunk.offsets)))
            if info is None:
                raise CheckpointError(f"{self.directory}: chunk {tuple(chunk.offsets)} of {key!r} has no storage entry "
                                      "in the tensor index; the index is damaged: re-save the checkpoint")
            if transforms and info.transform_descriptors:
                raise UnsupportedFeatureError(
                    f"{self.directory}: {key!r} is stored transformed ({info.transform_descriptors}); only a built "
                    "model reads it (export_ckpt(..., offline=False), --build-model)")
            chunks.append(_Chunk(tuple(chunk.offsets), tuple(chunk.sizes), info.relative_path, info.offset,
                                 info.length))
        self._chunks[key] = chunks
        return chunks

    def keys(self) -> list[str]:
        return sorted(self._meta)

    def check_chunks(self, keys: list[str]) -> None:
        """Look up the chunks of ``keys`` now (before any output exists): a damaged index is a
        :class:`CheckpointError`, transformed storage an :class:`UnsupportedFeatureError`."""
        for key in keys:
            self._chunks_of(key)

    def size(self, key: str) -> tuple[int, ...]:
        return tuple(self._meta[key].size)

    def dtype(self, key: str) -> torch.dtype:
        return self._meta[key].properties.dtype

    def _span(self, chunk: _Chunk, key: str) -> FileSpan:
        span = record_span(self.directory / chunk.file, chunk.start, chunk.length)
        if span.shape != chunk.sizes or span.dtype != self.dtype(key):
            raise CheckpointError(f"{self.directory / chunk.file}: chunk {chunk.offsets} of {key!r} holds {span.dtype} "
                                  f"{list(span.shape)}, the index says {self.dtype(key)} {list(chunk.sizes)}")
        return span

    def part(self, key: str, layer: int | None = None) -> Part:
        """The whole tensor ``key`` (``layer`` None) or its slice ``[layer]`` along dim 0 (a stacked layer key):
        one span when one chunk holds it, else the chunks assembled in memory. Gaps or overlaps are refused."""
        size = self.size(key)
        if layer is not None and not (size and 0 <= layer < size[0]):
            raise CheckpointError(f"{self.directory}: {key!r} of size {list(size)} has no layer {layer}")
        pieces: list[tuple[tuple[int, ...], FileSpan]] = []
        for chunk in self._chunks_of(key):
            if layer is not None and not chunk.offsets[0] <= layer < chunk.offsets[0] + chunk.sizes[0]:
                continue
            span = self._span(chunk, key)
            if layer is not None:
                row = span.rows(layer - chunk.offsets[0], layer - chunk.offsets[0] + 1)
                span = FileSpan(row.path, row.offset, row.dtype, row.shape[1:])
                pieces.append((chunk.offsets[1:], span))
            else:
                pieces.append((chunk.offsets, span))
        return _tile(size[1:] if layer is not None else size, pieces, where=f"{self.directory}: {key!r}"
                     + (f" layer {layer}" if layer is not None else ""))


def _tile(shape: tuple[int, ...], pieces: list[tuple[tuple[int, ...], FileSpan]], *, where: str) -> Part:
    """One part of ``shape`` from spans at their offsets: the span itself, or the spans copied in memory."""
    volume = sum(math.prod(s.shape) for _, s in pieces)
    inside = all(all(0 <= o and o + n <= d for o, n, d in zip(off, s.shape, shape)) for off, s in pieces)
    boxes = [(off, tuple(o + n for o, n in zip(off, s.shape))) for off, s in pieces]
    overlap = any(all(a0 < b1 and b0 < a1 for a0, a1, b0, b1 in zip(lo, hi, lo2, hi2))
                  for i, (lo, hi) in enumerate(boxes) for lo2, hi2 in boxes[i + 1:])
    if volume != math.prod(shape) or not inside or overlap:
        raise CheckpointError(f"{where}: the chunks {[(o, s.shape) for o, s in pieces][:6]} do not tile "
                              f"{list(shape)} exactly; the tensor index is damaged: re-save the checkpoint")
    if len(pieces) == 1:
        return pieces[0][1]
    out = torch.empty(shape, dtype=pieces[0][1].dtype)
    for off, span in pieces:
        out[tuple(slice(o, o + n) for o, n in zip(off, span.shape))].copy_(span.read())
    return out
