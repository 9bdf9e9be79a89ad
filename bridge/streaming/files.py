"""Reads of safetensors files by byte span, row range or column range, budgeted and counted.

Row ranges and whole tensors lie contiguously in their file, so they are handed out as
:class:`~bridge.streaming.pieces.FileSpan` (path, offset, dtype, shape) instead of data: the writers
copy spans file to file inside the kernel, and only code that needs a tensor reads one. A column
range (a row-parallel weight's TP shard) is one span per row, or, for narrow rows, read through
``safetensors.safe_open``'s map (``get_slice``) into a new tensor; a touched page of a map counts in
the process' RSS while the map lives, so :class:`MappedFiles` closes (unmaps) every handle once
``budget`` bytes were touched through them.

:class:`SliceReader` puts this under an :class:`~bridge.checkpoint.reader.HFCheckpointReader`: the
reader validates the directory (headers, index, path safety) and says which file holds a tensor;
a file is used only after the reader confirms it is unchanged since then. Every read is counted
(:class:`ReadStats`), so tests can prove that only a rank's rows or columns were read.
:class:`Progress` is the tqdm bar (bytes, with a tensor count) of long conversions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm

from bridge._logging import get_logger
from bridge.checkpoint.format import Header, read_header
from bridge.checkpoint.reader import HFCheckpointReader
from bridge.errors import CheckpointError
from bridge.streaming.pieces import FileSpan

__all__ = ["DEFAULT_MAP_BUDGET", "FileSpan", "MappedFiles", "Progress", "ReadStats", "SliceReader"]

log = get_logger("streaming.files")

#: Bytes touched through open maps before they are all closed (bounds the mapped part of RSS).
DEFAULT_MAP_BUDGET = 16 * 2**20


@dataclass(frozen=True)
class ReadStats:
    """What was read: ``full_reads`` whole tensors, ``slice_reads`` row/column ranges, ``bytes_read``
    bytes handed out as spans or tensors (a column range counts its own bytes), ``reopens`` times the
    maps were closed."""

    full_reads: int = 0
    slice_reads: int = 0
    bytes_read: int = 0
    reopens: int = 0


class MappedFiles:
    """Spans and strided reads of tensors in safetensors files, opened on demand (``opener(key) -> path``).

    Tensors returned by :meth:`get` are views into a map: read them, never modify them in place. A
    view keeps its map alive until it is dropped, budget or not.
    """

    def __init__(self, opener: Callable[[Hashable], Path], *, budget: int = DEFAULT_MAP_BUDGET) -> None:
        if budget <= 0:
            raise CheckpointError(f"map budget must be a positive number of bytes, found {budget!r}")
        self._opener = opener
        self._budget = budget
        self._headers: dict[Hashable, tuple[Path, Header]] = {}
        self._handles: dict[Hashable, Any] = {}
        self._touched = 0
        self._full = self._slices = self._bytes = self._reopens = 0

    @property
    def stats(self) -> ReadStats:
        return ReadStats(self._full, self._slices, self._bytes, self._reopens)

    def _header(self, key: Hashable) -> tuple[Path, Header]:
        found = self._headers.get(key)
        if found is None:
            path = self._opener(key)
            with open(path, "rb") as handle:
                found = self._headers[key] = (path, read_header(path, handle, os.fstat(handle.fileno()).st_size))
        return found

    def _span(self, key: Hashable, name: str) -> FileSpan:
        path, header = self._header(key)
        info = header.tensors.get(name)
        if info is None:
            raise CheckpointError(f"{path}: no tensor {name!r}; the file does not hold what its index says")
        return FileSpan(path, header.data_start + info.begin, info.torch_dtype, info.shape)

    def whole(self, key: Hashable, name: str) -> FileSpan:
        """All of ``name`` in file ``key``, as a span (nothing is read)."""
        span = self._span(key, name)
        self._full += 1
        self._bytes += span.nbytes
        return span

    def rows(self, key: Hashable, name: str, start: int, stop: int) -> FileSpan:
        """Rows ``start:stop`` (dim 0) of ``name``, as a span (nothing is read)."""
        span = self._span(key, name).rows(start, stop)
        self._slices += 1
        self._bytes += span.nbytes
        return span

    def columns(self, key: Hashable, name: str, start: int, stop: int) -> list[FileSpan]:
        """Columns ``start:stop`` (dim 1) of ``name``, as one span per row (nothing is read)."""
        spans = self._span(key, name).columns(start, stop)
        self._slices += 1
        self._bytes += sum(s.nbytes for s in spans)
        return spans

    def _handle(self, key: Hashable) -> Any:
        handle = self._handles.get(key)
        if handle is None:
            path = self._header(key)[0]
            try:
                handle = safe_open(str(path), framework="pt")
                handle.__enter__()
            except (OSError, SafetensorError) as exc:
                raise CheckpointError(f"{path}: cannot open as safetensors ({exc}); re-create the file") from exc
            self._handles[key] = handle
        return handle

    def _touch(self, nbytes: int) -> None:
        self._touched += nbytes
        if self._touched >= self._budget:
            self.close()
            self._reopens += 1

    def get(self, key: Hashable, name: str) -> torch.Tensor:
        """The whole tensor ``name`` of file ``key``, as a view into the map."""
        tensor = self._handle(key).get_tensor(name)
        self._full += 1
        self._bytes += tensor.nbytes
        self._touch(tensor.nbytes)
        return tensor

    def cols(self, key: Hashable, name: str, start: int, stop: int) -> torch.Tensor:
        """Columns ``start:stop`` (dim 1) of ``name``, as a new contiguous tensor.

        Every row contributes a strided piece, so the pages of the whole tensor are touched.
        """
        whole = self._handle(key).get_slice(name)
        part = whole[:, start:stop].contiguous()
        self._slices += 1
        self._bytes += part.nbytes
        self._touch(math.prod(whole.get_shape()) * part.element_size())
        return part

    def close(self) -> None:
        """Close every open handle (their maps go once no returned view holds them)."""
        for handle in self._handles.values():
            handle.__exit__(None, None, None)
        self._handles.clear()
        self._touched = 0

    def __enter__(self) -> MappedFiles:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class SliceReader:
    """Rows, columns or whole tensors of a validated HF checkpoint, by tensor name.

    Args:
        reader: the validated checkpoint (or its directory).
        budget: see :class:`MappedFiles`.
    """

    def __init__(self, reader: HFCheckpointReader | str | Path, *, budget: int = DEFAULT_MAP_BUDGET) -> None:
        self.reader = reader if isinstance(reader, HFCheckpointReader) else HFCheckpointReader(reader)
        self._files = MappedFiles(self.reader.verified_path, budget=budget)  # type: ignore[arg-type]

    @property
    def path(self) -> Path:
        return self.reader.path

    @property
    def stats(self) -> ReadStats:
        return self._files.stats

    def keys(self) -> list[str]:
        return self.reader.keys()

    def shape(self, name: str) -> tuple[int, ...]:
        return self.reader.shape(name)

    def dtype(self, name: str) -> torch.dtype:
        return self.reader.dtype(name)

    def whole(self, name: str) -> FileSpan:
        """All of ``name``, as a span (nothing is read)."""
        return self._files.whole(self.reader.file_of(name), name)

    def rows(self, name: str, start: int, stop: int) -> FileSpan:
        """Rows ``start:stop`` of ``name``, as a span (nothing is read)."""
        return self._files.rows(self.reader.file_of(name), name, start, stop)

    def columns(self, name: str, start: int, stop: int) -> list[FileSpan]:
        """Columns ``start:stop`` of ``name``, as one span per row (nothing is read)."""
        return self._files.columns(self.reader.file_of(name), name, start, stop)

    def cols(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Columns ``start:stop`` of 2-D ``name`` (a new contiguous tensor)."""
        return self._files.cols(self.reader.file_of(name), name, start, stop)

    def get(self, name: str) -> torch.Tensor:
        """The whole tensor, as a view into a map (for mappings read the reference way)."""
        return self._files.get(self.reader.file_of(name), name)

    def close(self) -> None:
        self._files.close()

    def __enter__(self) -> SliceReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Progress:
    """A tqdm bar counting bytes, with ``done/total tensors`` after it.

    ``enabled=None`` shows it only on a terminal (tqdm's own rule); progress is also logged at DEBUG.
    """

    def __init__(self, *, total_bytes: int, total_tensors: int, desc: str, enabled: bool | None = None) -> None:
        self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                         disable=None if enabled is None else not enabled, leave=False)
        self._tensors, self._total = 0, total_tensors

    def advance(self, nbytes: int, tensors: int = 1) -> None:
        self._tensors += tensors
        self._bar.update(nbytes)
        self._bar.set_postfix_str(f"{self._tensors}/{self._total} tensors", refresh=False)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
