"""Move checkpoint bytes between files and an accelerator through a few reusable host buffers.

A weight load onto a GPU used to read every tensor into fresh host memory and copy it over with a
blocking, pageable ``copy_``: every page of the checkpoint was faulted in once more, and the disk
reads, the host copies and the transfers ran one after the other. Here a fixed pool of host buffers
(:class:`StagingSlots`, pinned when CUDA is available, so transfers are DMA and may be asynchronous)
is reused for the whole checkpoint:

- :class:`DeviceUploader` packs the file spans of many tensors (:class:`~bridge.streaming.pieces.Pieces`)
  into slot-sized jobs; a few reader threads fill slots with positioned reads (``preadv`` releases the
  GIL), each slot is copied to its place in the device tensors with ``non_blocking=True``, and an event
  guards its reuse. Disk reads, host copies and transfers overlap.
- :func:`download_chunks` cuts a device tensor into slot-sized chunks copied to host one after the
  other, so an exporter can write chunk ``i`` while chunk ``i + 1`` is transferred (the checkpoint
  writer does that in its background thread).

Memory stays ``count * nbytes`` host bytes, whatever the checkpoint size. Without CUDA the slots are
ordinary memory and every copy is synchronous; the tests exercise the packing that way.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import torch

from bridge._logging import get_logger
from bridge.errors import CheckpointError
from bridge.streaming.pieces import ColumnJoin, FileSpan, Pieces

__all__ = ["DeviceUploader", "Slot", "StagingSlots", "column_region", "download_chunks", "shared_slots"]

log = get_logger("streaming.staging")

#: Default slot size and count: 4 x 32 MiB of (pinned) host memory.
SLOT_BYTES = 32 * 2**20
SLOT_COUNT = 4


@dataclass(eq=False)
class Slot:
    """One host buffer; its ``events`` (CUDA only) complete when the last transfers out of it have."""

    buffer: torch.Tensor  # uint8, 1-D
    events: list[object] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return self.buffer.numel()

    def view(self) -> memoryview:
        return memoryview(self.buffer.numpy())


class StagingSlots:
    """``count`` host buffers of ``nbytes`` each, handed out one at a time (blocking when all are busy).

    Buffers are pinned when ``pin`` (default: CUDA is available), which makes copies to and from the
    GPU DMA transfers that can run asynchronously.
    """

    def __init__(self, *, nbytes: int = SLOT_BYTES, count: int = SLOT_COUNT, pin: bool | None = None) -> None:
        if nbytes <= 0 or count <= 0:
            raise CheckpointError(f"staging slots: expected positive nbytes and count, found {nbytes} x {count}")
        self.pinned = torch.cuda.is_available() if pin is None else pin
        self._free: queue.Queue[Slot] = queue.Queue()
        for _ in range(count):
            self._free.put(Slot(torch.empty(nbytes, dtype=torch.uint8, pin_memory=self.pinned)))
        self.nbytes, self.count = nbytes, count

    def acquire(self) -> Slot:
        """A free slot whose earlier transfers have completed."""
        slot = self._free.get()
        for event in slot.events:
            event.synchronize()  # type: ignore[attr-defined]
        slot.events.clear()
        return slot

    def release(self, slot: Slot, *, devices: Iterable[torch.device] = ()) -> None:
        """Give ``slot`` back; its reuse waits for the work queued so far on each of ``devices``' current stream.

        The stream must be named by device: a worker thread's current CUDA device is its own (device 0 in
        a new thread), not the one the transfers went to (a rank's GPU under torchrun).
        """
        for device in devices:
            if device.type == "cuda":
                event = torch.cuda.Event()
                event.record(torch.cuda.current_stream(device))
                slot.events.append(event)
        self._free.put(slot)

    def wait_all(self) -> None:
        """Block until every slot is free and its transfers are complete."""
        slots = [self.acquire() for _ in range(self.count)]
        for slot in slots:
            self._free.put(slot)


_SHARED: dict[tuple[int, int, bool], StagingSlots] = {}
_SHARED_LOCK = threading.Lock()


def shared_slots(*, nbytes: int = SLOT_BYTES, count: int = SLOT_COUNT) -> StagingSlots:
    """The process' slots of this size (allocated once: pinning memory is slow)."""
    key = (nbytes, count, torch.cuda.is_available())
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = StagingSlots(nbytes=nbytes, count=count)
        return _SHARED[key]


@dataclass
class _Job:
    reads: list[tuple[Path, int, int, int]] = field(default_factory=list)  # path, file offset, slot offset, n
    copies: list[tuple[torch.Tensor, int, int, int]] = field(default_factory=list)  # target u8, at, slot at, n
    used: int = 0
    strided: _Strided | None = None  # a block of a column slice (then ``reads`` has its one region read)


@dataclass(frozen=True)
class _Strided:
    """``rows`` pieces of ``piece`` bytes, ``stride`` bytes apart in the slot, go to ``flat[at:]`` back to back."""

    flat: torch.Tensor
    at: int
    rows: int
    piece: int
    stride: int


def column_region(pieces: Pieces) -> tuple[Path, int, int, int] | None:
    """``(path, offset, stride, piece bytes)`` when ``pieces`` is a column slice of one stored tensor (one
    span per row, equally far apart: a row-parallel shard), else ``None``."""
    parts = pieces.parts
    if len(parts) < 2 or not all(isinstance(p, FileSpan) for p in parts):
        return None
    first = parts[0]
    assert isinstance(first, FileSpan)
    piece, stride = first.nbytes, parts[1].offset - first.offset  # type: ignore[union-attr]
    if stride <= piece:
        return None
    for i, part in enumerate(parts):
        if part.path != first.path or part.offset != first.offset + i * stride or part.nbytes != piece:  # type: ignore[union-attr]
            return None
    return first.path, first.offset, stride, piece


def _flat_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().reshape(-1).view(torch.uint8)


class DeviceUploader:
    """Fill device tensors from :class:`Pieces` through ``slots``; call :meth:`close` (or use ``with``).

    Args:
        slots: the host buffers (default: :func:`shared_slots`).
        readers: threads reading files into slots (default: up to 4, one per spare core).
    """

    def __init__(self, slots: StagingSlots | None = None, *, readers: int | None = None) -> None:
        self.slots = slots if slots is not None else shared_slots()
        readers = readers or max(1, min(4, (os.cpu_count() or 2) - 1, self.slots.count - 1))
        self._pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="bridge-upload")
        self._futures: deque[Future[None]] = deque()
        self._job = _Job()
        self._fds: dict[Path, int] = {}
        self._fd_lock = threading.Lock()
        self.bytes_staged = 0
        self.jobs = 0

    def __enter__(self) -> DeviceUploader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(wait_only=exc_type is not None)

    def add(self, pieces: Pieces, target: torch.Tensor) -> None:
        """Queue ``target`` (shape ``pieces.shape``) to be filled; it must not be used before :meth:`close`."""
        if tuple(target.shape) != pieces.shape:
            raise CheckpointError(f"cannot read a {pieces.shape} tensor into one of shape {tuple(target.shape)}")
        if target.dtype != pieces.dtype or not target.is_contiguous():
            target.copy_(pieces.tensor())  # a cast or a strided target: materialize on host first
            return
        flat = _flat_bytes(target)
        region = column_region(pieces)
        if region is not None and region[2] + region[3] <= self.slots.nbytes:
            self._stage_columns(flat, *region, rows=len(pieces.parts))
            return
        at = 0
        for part in pieces.parts:
            size = part.nbytes
            if isinstance(part, FileSpan):
                self._stage(part.path, part.offset, flat, at, size)
            elif size:  # already in memory (e.g. vocab padding): one direct copy
                data = part.tensor() if isinstance(part, ColumnJoin) else part
                flat[at:at + size].copy_(_flat_bytes(data.contiguous()))
            at += size

    def _stage(self, path: Path, offset: int, flat: torch.Tensor, at: int, size: int) -> None:
        while size:
            room = self.slots.nbytes - self._job.used
            n = min(room, size)
            job = self._job
            # Rows of a column slice are contiguous in the slot and in the target: one transfer for all
            # of them (and one read where the file is contiguous too).
            last = job.reads[-1] if job.reads else None
            if last is not None and last[0] == path and last[1] + last[3] == offset:
                job.reads[-1] = (path, last[1], last[2], last[3] + n)
            else:
                job.reads.append((path, offset, job.used, n))
            prev = job.copies[-1] if job.copies else None
            if prev is not None and prev[0] is flat and prev[1] + prev[3] == at:
                job.copies[-1] = (flat, prev[1], prev[2], prev[3] + n)
            else:
                job.copies.append((flat, at, job.used, n))
            job.used += n
            offset, at, size = offset + n, at + n, size - n
            if self._job.used == self.slots.nbytes:
                self._submit()

    def _stage_columns(self, flat: torch.Tensor, path: Path, offset: int, stride: int, piece: int, *,
                       rows: int) -> None:
        """A column slice: blocks of whole rows read with one ``preadv`` each (the other ranks' columns
        too), the columns picked out by a strided copy on the target's device. A few more bytes read,
        instead of one read and one transfer per row."""
        self._submit()
        per_block = (self.slots.nbytes - piece) // stride + 1
        for row in range(0, rows, per_block):
            n = min(per_block, rows - row)
            region = (n - 1) * stride + piece
            self._job.reads.append((path, offset + row * stride, 0, region))
            self._job.strided = _Strided(flat, row * piece, n, piece, stride)
            self._job.used = region
            self._submit()

    def _submit(self) -> None:
        if not self._job.used:
            return
        job, self._job = self._job, _Job()
        self.bytes_staged += job.used
        self.jobs += 1
        while self._futures and self._futures[0].done():
            self._futures.popleft().result()
        while len(self._futures) >= 4 * self.slots.count:  # bound the queue of descriptors
            self._futures.popleft().result()
        self._futures.append(self._pool.submit(self._run, job))

    def _fd(self, path: Path) -> int:
        with self._fd_lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY)
            return fd

    def _run(self, job: _Job) -> None:
        slot = self.slots.acquire()
        devices: set[torch.device] = set()
        try:
            view = slot.view()
            for path, offset, at, n in job.reads:
                fd, done = self._fd(path), 0
                while done < n:
                    count = os.preadv(fd, [view[at + done:at + n]], offset + done)
                    if count <= 0:
                        raise CheckpointError(f"{path}: unexpected end of file at byte {offset + done} "
                                              f"(expected {n - done} more bytes); the checkpoint is truncated")
                    done += count
            for flat, at, slot_at, n in job.copies:
                flat[at:at + n].copy_(slot.buffer[slot_at:slot_at + n], non_blocking=self.slots.pinned)
                devices.add(flat.device)
            if (cols := job.strided) is not None:
                region = slot.buffer[:job.used]
                if cols.flat.device.type != "cpu":  # whole rows over, then the columns picked out there
                    region = region.to(cols.flat.device, non_blocking=self.slots.pinned)
                    devices.add(cols.flat.device)
                picked = region.as_strided((cols.rows, cols.piece), (cols.stride, 1))
                cols.flat[cols.at:cols.at + cols.rows * cols.piece].view(cols.rows, cols.piece).copy_(picked)
        finally:
            self.slots.release(slot, devices=devices)

    def close(self, *, wait_only: bool = False) -> None:
        """Submit what is pending, wait for every transfer, close files; the first error is raised."""
        error: BaseException | None = None
        try:
            if not wait_only:
                self._submit()
            while self._futures:
                future = self._futures.popleft()
                try:
                    future.result()
                except BaseException as exc:  # keep waiting: no job may still write into a slot
                    error = error or exc
            self._pool.shutdown(wait=True)
            self.slots.wait_all()
        finally:
            with self._fd_lock:
                for fd in self._fds.values():
                    os.close(fd)
                self._fds.clear()
        if error is not None and not wait_only:
            raise error
        log.debug("uploaded %d bytes in %d staged jobs", self.bytes_staged, self.jobs)


def download_chunks(tensor: torch.Tensor, slots: StagingSlots) -> Iterator[tuple[int, Slot, int]]:
    """Copy ``tensor``'s bytes to host, one slot at a time: yields ``(byte offset, slot, nbytes)``.

    The consumer owns each yielded slot and must give it back with ``slots.release(slot)`` once its
    bytes are used (possibly from another thread); the next chunk is copied as soon as a slot is free.
    """
    flat = _flat_bytes(tensor.contiguous())
    total = flat.numel()
    for start in range(0, total, slots.nbytes):
        n = min(slots.nbytes, total - start)
        slot = slots.acquire()
        try:
            slot.buffer[:n].copy_(flat[start:start + n])  # synchronous: the host bytes are ready
        except BaseException:
            slots.release(slot)
            raise
        yield start, slot, n
