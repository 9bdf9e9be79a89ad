"""Write HF sharded safetensors whose tensors are all known up front, each at its final offset.

:class:`~bridge.checkpoint.writer.HFCheckpointWriter` takes tensors of unknown shapes, so it holds a
whole shard in memory before writing it. An export from a saved Megatron layout knows every output
name, dtype and shape before reading any data (:func:`~bridge.streaming.plan.plan_export`). So
:class:`PlannedHFWriter` assigns shards with the same rule as ``HFCheckpointWriter`` (and
``save_pretrained``), writes each file's header first, and puts each tensor's bytes at its final
offset as soon as its pieces are known (spans copied file to file, tensors written from memory):
memory holds one tensor at most, whatever the shard size.
The files are byte-identical to ``HFCheckpointWriter``'s for the same tensors in the same order.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bridge._logging import get_logger
from bridge.checkpoint.format import encode_header, storage_order
from bridge.checkpoint.index import INDEX_NAME, encode_index, shard_name
from bridge.errors import CheckpointError
from bridge.streaming.pieces import Pieces
from bridge.streaming.plan import HFTensorPlan

__all__ = ["PlannedExport", "PlannedHFWriter", "assign_shards", "planned_export", "start_writeback"]

log = get_logger("streaming.hf_out")

_FORMAT_METADATA = {"format": "pt"}
#: A durable writer starts the disk write-back of a file after every this many bytes written to it.
WRITEBACK_EVERY = 64 * 2**20


def _sync_file_range() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # not Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> bool:
    """Start writing ``fd``'s dirty pages to disk without waiting (Linux ``sync_file_range``), so that the
    final ``fsync`` of a durable write only waits for the tail; ``False`` where that is unavailable."""
    return _SYNC_FILE_RANGE is not None and _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE) == 0


def assign_shards(tensors: list[HFTensorPlan], max_shard_size: int) -> list[list[HFTensorPlan]]:
    """Group ``tensors`` (in write order) into shards exactly as ``HFCheckpointWriter.add`` does.

    A tensor bigger than ``max_shard_size`` gets a shard of its own at once (before the shard being
    filled); a tensor that would push the current shard over the limit closes it first.
    """
    shards: list[list[HFTensorPlan]] = []
    pending: list[HFTensorPlan] = []
    pending_bytes = 0
    for t in tensors:
        if t.nbytes > max_shard_size:
            shards.append([t])
            continue
        if pending and pending_bytes + t.nbytes > max_shard_size:
            shards.append(pending)
            pending, pending_bytes = [], 0
        pending.append(t)
        pending_bytes += t.nbytes
    if pending:
        shards.append(pending)
    return shards


@dataclass(frozen=True)
class _Slot:
    shard: int
    offset: int  # absolute, in the file
    plan: HFTensorPlan


class PlannedHFWriter:
    """Write the planned tensors into ``directory`` (shards, then the index on :meth:`finish`).

    Args:
        directory: an existing, empty directory (a staging directory).
        tensors: every tensor to write, in the order that decides the sharding.
        max_shard_size: bytes per shard.
        durable: ``fsync`` each shard when it is complete.
    """

    def __init__(self, directory: Path, tensors: list[HFTensorPlan], *, max_shard_size: int,
                 durable: bool = True) -> None:
        self.directory = directory
        self._durable = durable
        shards = assign_shards(tensors, max_shard_size)
        self.files = [shard_name(i + 1, len(shards)) for i in range(len(shards))]
        self._headers: list[bytes] = []
        self._sizes: list[int] = []
        self._slots: dict[str, _Slot] = {}
        for number, shard in enumerate(shards):
            by_name = {t.name: t for t in shard}
            order = storage_order({t.name: t.dtype for t in shard})
            header = encode_header([(n, by_name[n].dtype, by_name[n].shape) for n in order], _FORMAT_METADATA)
            offset = len(header)
            for n in order:
                self._slots[n] = _Slot(number, offset, by_name[n])
                offset += by_name[n].nbytes
            self._headers.append(header)
            self._sizes.append(offset)
        self._remaining = [len(s) for s in shards]
        self._fds: dict[int, int] = {}
        self._written: set[str] = set()
        self._partial: dict[str, int] = {}  # bytes written so far of tensors written by ranges
        self._unsynced = [0] * len(shards)  # bytes written to each shard since its write-back was started
        self.writebacks_started = 0
        self.total_size = sum(t.nbytes for t in tensors)
        self.total_parameters = sum(t.nbytes // t.dtype.itemsize for t in tensors)
        self.weight_map = {n: self.files[s.shard] for n, s in self._slots.items()}

    def offset(self, name: str) -> int:
        """Where tensor ``name``'s bytes start in its shard file."""
        return self._slots[name].offset

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            path = self.directory / self.files[shard]
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            self._fds[shard] = fd
            os.ftruncate(fd, self._sizes[shard])
            self._pwrite(fd, memoryview(self._headers[shard]), 0, shard)
        return fd

    def _pwrite(self, fd: int, data: memoryview, offset: int, shard: int) -> None:
        try:
            while len(data):
                count = os.pwrite(fd, data, offset)
                data, offset = data[count:], offset + count
        except OSError as exc:
            raise CheckpointError(
                f"writing {self.files[shard]} in {self.directory} failed: {exc.strerror or exc}; nothing was "
                "committed (free disk space or choose another location, then export again)"
            ) from exc

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Write tensor ``name`` (dtype and shape as planned) at its place; a shard closes when complete."""
        self.write_pieces(name, Pieces.of(tensor))

    def write_pieces(self, name: str, pieces: Pieces) -> None:
        """Write tensor ``name`` from its pieces (spans copied file to file, tensors from memory)."""
        slot = self._slots.get(name)
        if slot is None or name in self._written:
            raise CheckpointError(f"tensor {name!r} was not planned for {self.directory} or was already written")
        plan = slot.plan
        if pieces.dtype != plan.dtype or pieces.shape != plan.shape:
            raise CheckpointError(
                f"tensor {name!r}: planned {plan.dtype} {plan.shape}, found {pieces.dtype} {pieces.shape}"
            )
        fd = self._fd(slot.shard)
        try:
            pieces.write_at(fd, slot.offset)
        except OSError as exc:
            raise CheckpointError(
                f"writing {self.files[slot.shard]} in {self.directory} failed: {exc.strerror or exc}; nothing was "
                "committed (free disk space or choose another location, then export again)"
            ) from exc
        self._wrote(slot.shard, fd, pieces.nbytes)
        self._done(name, slot)

    def write_range(self, name: str, start: int, data: memoryview) -> None:
        """Write bytes ``start:start + len(data)`` of tensor ``name``; it counts as written once all its bytes
        are (ranges may come in any order, and must not overlap)."""
        slot = self._slots.get(name)
        nbytes = slot.plan.nbytes if slot is not None else 0
        if slot is None or name in self._written or start < 0 or start + len(data) > nbytes:
            raise CheckpointError(f"tensor {name!r}: bytes {start}:{start + len(data)} were not planned for "
                                  f"{self.directory} (planned {nbytes} bytes), or the tensor was already written")
        fd = self._fd(slot.shard)
        self._pwrite(fd, data, slot.offset + start, slot.shard)
        self._wrote(slot.shard, fd, len(data))
        self._partial[name] = self._partial.get(name, 0) + len(data)
        if self._partial[name] == nbytes:
            del self._partial[name]
            self._done(name, slot)

    def _wrote(self, shard: int, fd: int, nbytes: int) -> None:
        """Durable: start the write-back every ``WRITEBACK_EVERY`` bytes, overlapping the disk with the rest."""
        self._unsynced[shard] += nbytes
        if self._durable and self._unsynced[shard] >= WRITEBACK_EVERY:
            self._unsynced[shard] = 0
            self.writebacks_started += start_writeback(fd)

    def _done(self, name: str, slot: _Slot) -> None:
        self._written.add(name)
        self._remaining[slot.shard] -= 1
        if not self._remaining[slot.shard]:
            self._close(slot.shard)

    def _close(self, shard: int) -> None:
        fd = self._fds.pop(shard)
        try:
            if self._durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        log.debug("wrote %s", self.files[shard])

    def finish(self) -> None:
        """Check that every planned tensor was written, then write the index (when there are shards)."""
        unwritten = sorted(set(self._slots) - self._written)
        if unwritten:
            raise CheckpointError(f"{len(unwritten)} planned tensor(s) were never written, e.g. {unwritten[:5]}")
        if len(self.files) > 1:
            text = encode_index(self.weight_map, total_size=self.total_size, total_parameters=self.total_parameters)
            with open(self.directory / INDEX_NAME, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                if self._durable:
                    os.fsync(handle.fileno())

    def abort(self) -> None:
        """Close open files (the caller removes the directory)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


@dataclass
class PlannedExport:
    """What :func:`planned_export` yields: the ``writer``, and the committed ``path`` once the block ends."""

    writer: PlannedHFWriter
    path: Path | None = None


@contextlib.contextmanager
def planned_export(hf_dir: str | os.PathLike[str], tensors: list[HFTensorPlan], *, max_shard_size: int,
                   companions: Any, config: Mapping[str, Any] | None = None, overwrite: bool = False,
                   durable: bool = True) -> Iterator[PlannedExport]:
    """An HF checkpoint at ``hf_dir`` whose ``tensors`` the block writes through ``.writer``; when it ends, the
    index, the companion files of ``companions`` (a :class:`~bridge.checkpoint.paths.CheckpointDir` or None;
    ``config`` replaces its ``config.json``) are written, the result is read back against the plan and the
    directory appears atomically (``.path``). Any failure leaves nothing behind and never touches a directory
    the writer did not create (:class:`~bridge.checkpoint.atomic.AtomicDirectory`)."""
    from bridge.checkpoint.atomic import AtomicDirectory
    from bridge.checkpoint.companions import copy_companions
    from bridge.checkpoint.reader import HFCheckpointReader

    stage = AtomicDirectory(hf_dir, overwrite=overwrite, durable=durable)
    export: PlannedExport | None = None
    try:
        export = PlannedExport(PlannedHFWriter(stage.staging, tensors, max_shard_size=max_shard_size,
                                               durable=durable))
        yield export
        export.writer.finish()
        copy_companions(companions, stage.staging, config=config, durable=durable)
        check = HFCheckpointReader(stage.staging)
        if set(check.keys()) != {t.name for t in tensors} or check.total_size != export.writer.total_size:
            raise CheckpointError(f"{hf_dir}: the written checkpoint does not read back as planned (writer bug)")
        export.path = Path(stage.commit())
    except BaseException:
        if export is not None:
            export.writer.abort()
        stage.abort()
        raise

