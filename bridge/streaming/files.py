"""Tensors of safetensors files handed out as byte spans (nothing read), counted; and the progress bar.

A safetensors file stores each tensor's bytes contiguously, row-major, at offsets its (validated)
header gives. So a whole tensor, a range of its rows, or a range of its columns (one range per row)
is a :class:`~bridge.streaming.pieces.FileSpan` list computed from the header alone: the writers copy
spans file to file inside the kernel, and only code that needs a tensor reads one (positioned reads;
nothing is memory-mapped, so nothing of the checkpoint counts in the process' RSS).

:class:`SliceReader` puts this under an :class:`~bridge.checkpoint.reader.HFCheckpointReader`: the
reader validates the directory (headers, index, path safety) and says which file holds a tensor;
a file is used only after the reader confirms it is unchanged since then. Every span handed out is
counted (:class:`ReadStats`), so tests can prove that only a rank's rows or columns were read.
:class:`SpanFiles` does the same for any safetensors files (the rank files of a saved layout).
:class:`Progress` is the tqdm bar (bytes, with a tensor count) of long conversions.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import torch
from tqdm.auto import tqdm

from bridge._logging import get_logger
from bridge.checkpoint.format import Header, read_header
from bridge.checkpoint.reader import HFCheckpointReader
from bridge.errors import CheckpointError
from bridge.streaming.pieces import FileSpan

__all__ = ["Progress", "ReadStats", "SliceReader", "SpanFiles"]

log = get_logger("streaming.files")


@dataclass(frozen=True)
class ReadStats:
    """What was asked for: ``full_reads`` whole tensors, ``slice_reads`` row or column ranges,
    ``bytes_read`` their bytes (a column range counts only its own bytes)."""

    full_reads: int = 0
    slice_reads: int = 0
    bytes_read: int = 0


class SpanFiles:
    """Spans of the tensors of safetensors files, by ``(key, name)``; ``opener(key)`` gives a file's path.

    Each header is read (and validated) once, when its file is first used. Safe to share between threads.
    """

    def __init__(self, opener: Callable[[Hashable], Path]) -> None:
        self._opener = opener
        self._headers: dict[Hashable, tuple[Path, Header]] = {}
        self._full = self._slices = self._bytes = 0
        self._lock = threading.Lock()

    def _count(self, full: int, slices: int, nbytes: int) -> None:
        with self._lock:
            self._full, self._slices, self._bytes = self._full + full, self._slices + slices, self._bytes + nbytes

    @property
    def stats(self) -> ReadStats:
        return ReadStats(self._full, self._slices, self._bytes)

    def _header(self, key: Hashable) -> tuple[Path, Header]:
        with self._lock:
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
        """All of ``name`` in file ``key``."""
        span = self._span(key, name)
        self._count(1, 0, span.nbytes)
        return span

    def rows(self, key: Hashable, name: str, start: int, stop: int) -> FileSpan:
        """Rows ``start:stop`` (dim 0) of ``name``."""
        span = self._span(key, name).rows(start, stop)
        self._count(0, 1, span.nbytes)
        return span

    def columns(self, key: Hashable, name: str, start: int, stop: int) -> list[FileSpan]:
        """Columns ``start:stop`` (dim 1) of ``name``: one span per row."""
        spans = self._span(key, name).columns(start, stop)
        self._count(0, 1, len(spans) * spans[0].nbytes if spans else 0)  # every row's piece is the same size
        return spans


class SliceReader:
    """Spans of the tensors of a validated HF checkpoint, by tensor name.

    Args:
        reader: the validated checkpoint (or its directory).
    """

    def __init__(self, reader: HFCheckpointReader | str | Path) -> None:
        self.reader = reader if isinstance(reader, HFCheckpointReader) else HFCheckpointReader(reader)
        self._files = SpanFiles(self.reader.verified_path)  # type: ignore[arg-type]

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
        """All of ``name``."""
        return self._files.whole(self.reader.file_of(name), name)

    def rows(self, name: str, start: int, stop: int) -> FileSpan:
        """Rows ``start:stop`` of ``name``."""
        return self._files.rows(self.reader.file_of(name), name, start, stop)

    def columns(self, name: str, start: int, stop: int) -> list[FileSpan]:
        """Columns ``start:stop`` of ``name``, one span per row."""
        return self._files.columns(self.reader.file_of(name), name, start, stop)

    def get(self, name: str) -> torch.Tensor:
        """The whole tensor, read into memory."""
        return self.whole(name).read()


class Progress:
    """A tqdm bar counting bytes, with ``done/total tensors`` after it.

    ``enabled=None`` shows it only on a terminal (tqdm's own rule). Safe to advance from several threads.
    """

    def __init__(self, *, total_bytes: int, total_tensors: int, desc: str, enabled: bool | None = None) -> None:
        self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                         disable=None if enabled is None else not enabled, leave=False)
        self._tensors, self._total = 0, total_tensors
        self._lock = threading.Lock()

    def advance(self, nbytes: int, tensors: int = 1) -> None:
        with self._lock:
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
