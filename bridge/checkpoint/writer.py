"""``HFCheckpointWriter``: stream tensors into sharded safetensors, laid out as ``save_pretrained`` lays them.

Sharding follows ``huggingface_hub.split_torch_state_dict_into_shards`` (used by ``transformers``'
``save_pretrained``), tensor by tensor in the order they are added: a tensor that would push the current
shard over ``max_shard_size`` starts a new shard, and a tensor bigger than ``max_shard_size`` gets a shard
of its own at once. One known divergence: the hub files every empty (0-byte) tensor into the shard of the
first empty one (they share storage id 0), even across shard boundaries; this writer files each where it
arrives. Shards are written as soon as they are full, under temporary names (the shard count is
only known at the end), then renamed ``model-0000k-of-0000N.safetensors`` (or ``model.safetensors`` when
there is one) next to an index identical in form to ``transformers``'. Everything happens in a staging
directory renamed into place by :class:`~bridge.checkpoint.atomic.AtomicDirectory`.

When every tensor's name, dtype and shape is known in advance (``expected``, e.g. from the source
checkpoint of an export) and they fit one shard, the layout does not depend on the order of arrival: the
file is planned up front and each tensor is written at its final offset by a background thread
(:class:`~bridge.streaming.hf_out.PlannedHFWriter`) while the caller produces the next one. Should the
tensors turn out to differ from ``expected``, the writer reads back what it wrote and goes on as above,
so the bytes are the same either way.
"""

from __future__ import annotations

import math
import os
import re
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import torch

from bridge._logging import get_logger
from bridge.checkpoint.atomic import AtomicDirectory
from bridge.checkpoint.companions import copy_companions
from bridge.checkpoint.format import dtype_name, encode_header, storage_order
from bridge.checkpoint.index import INDEX_NAME, encode_index, shard_name
from bridge.checkpoint.paths import CheckpointDir
from bridge.checkpoint.reader import HFCheckpointReader
from bridge.errors import CheckpointError

__all__ = ["DEFAULT_MAX_SHARD_SIZE", "HFCheckpointWriter", "parse_size"]

log = get_logger("checkpoint.writer")

#: ``PreTrainedModel.save_pretrained``'s default in transformers 5.x (it was "5GB" in 4.x).
DEFAULT_MAX_SHARD_SIZE = "50GB"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip
_FORMAT_METADATA = {"format": "pt"}


def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or a string such as ``"5GB"`` (decimal, as the hub) or ``"512MiB"``."""
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", str(size), flags=re.IGNORECASE)
        if match is None:
            raise CheckpointError(f"max_shard_size {size!r}: expected bytes as an int or a string like '5GB'")
        value = int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])
    if value <= 0:
        raise CheckpointError(f"max_shard_size must be positive, found {size!r}")
    return value


def _write_bytes(handle: BinaryIO, data: bytes | memoryview) -> None:
    """The one place bytes reach a shard file (tests patch it to simulate a full disk)."""
    handle.write(data)


class HFCheckpointWriter:
    """Write a Hugging Face checkpoint directory atomically, holding at most about one shard in memory.

    Use as a context manager: leaving the block normally commits, an exception (or ``KeyboardInterrupt``)
    discards everything written. Without ``with``, call :meth:`close` (commit) or :meth:`abort`.

    Args:
        out_dir: the checkpoint directory to create (or replace, with ``overwrite``).
        max_shard_size: bytes per shard, an int or a string like ``"5GB"``.
        overwrite: replace an existing non-empty ``out_dir`` once the new checkpoint is complete.
        source_dir: copy config, generation config, tokenizer and custom code files from here.
        config: a ``config.json`` dict to write (instead of the one in ``source_dir``).
        durable: ``fsync`` files and directories before the final rename.
        expected: ``{name: (dtype, shape)}`` of every tensor to come, if known; lets the writer stream (above).
    """

    #: Tensors handed to the background writer and not yet written (bounds memory in streaming mode).
    IN_FLIGHT = 2

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
        overwrite: bool = False,
        source_dir: str | os.PathLike[str] | None = None,
        config: Mapping[str, Any] | None = None,
        durable: bool = True,
        expected: Mapping[str, tuple[torch.dtype, tuple[int, ...]]] | None = None,
    ) -> None:
        self.max_shard_size = parse_size(max_shard_size)
        self._source = CheckpointDir.resolve(source_dir) if source_dir is not None else None
        self._config = dict(config) if config is not None else None
        self._durable = durable
        self._stage = AtomicDirectory(out_dir, overwrite=overwrite, durable=durable)
        self._names: set[str] = set()
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shards: list[tuple[Path, list[str]]] = []
        self._total_size = 0
        self._total_parameters = 0
        self.peak_buffered_bytes = 0
        self.weight_map: dict[str, str] = {}
        self._planned: Any = None  # a PlannedHFWriter while streaming
        self._order: list[str] = []
        self._futures: deque[tuple[Future[None], int]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        if expected:
            self._start_planned(expected)

    def _start_planned(self, expected: Mapping[str, tuple[torch.dtype, tuple[int, ...]]]) -> None:
        from bridge.streaming.hf_out import PlannedHFWriter
        from bridge.streaming.plan import HFTensorPlan

        plans = [HFTensorPlan(n, d, tuple(s), source=n) for n, (d, s) in expected.items()]
        if sum(p.nbytes for p in plans) > self.max_shard_size:
            return  # several shards: their layout depends on the order of arrival
        self._planned = PlannedHFWriter(self._stage.staging, plans, max_shard_size=self.max_shard_size,
                                        durable=self._durable)
        self._expected = {p.name: (p.dtype, p.shape) for p in plans}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridge-ckpt-writer")

    @property
    def streaming(self) -> bool:
        """Whether tensors are being written as they arrive (see the module's docstring)."""
        return self._planned is not None

    @property
    def path(self) -> Path:
        """The final checkpoint directory."""
        return self._stage.target

    @property
    def buffered_bytes(self) -> int:
        """Bytes of tensor data held in memory, waiting for their shard to be written."""
        return self._pending_bytes

    def __enter__(self) -> HFCheckpointWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._stage.done:
            self.close()

    def _guard(self) -> None:
        if self._stage.done:
            raise CheckpointError(f"{self.path}: the writer is closed (committed, aborted or failed)")

    @staticmethod
    def _snapshot(name: str, tensor: torch.Tensor, *, copy: bool = True) -> torch.Tensor:
        """A contiguous CPU copy that owns its memory (views, shared storage, GPU tensors, grads all fine);
        with ``copy=False``, a CPU tensor itself (detached)."""
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"tensor {name!r}: expected a torch.Tensor, found {type(tensor).__name__}")
        if tensor.layout != torch.strided or tensor.is_meta:
            raise CheckpointError(
                f"tensor {name!r}: expected a dense tensor with data, found layout {tensor.layout} on "
                f"{tensor.device}; materialize it first (tensor.to_dense() / load the weights)"
            )
        dtype_name(tensor.dtype)  # raises for dtypes safetensors cannot hold
        if not copy and tensor.device.type == "cpu":
            return tensor.detach()
        snapshot = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu")
        snapshot.copy_(tensor.detach())
        return snapshot

    def add(self, name: str, tensor: torch.Tensor, *, copy: bool = True) -> None:
        """Add tensor ``name``; it is copied now, so the caller may free or modify it afterwards.

        With ``copy=False`` a CPU tensor is kept by reference until its shard is written, saving a pass over
        its bytes: the caller must leave it unchanged until :meth:`close` (an export stream's tensors, for
        example). Tensors on other devices are always copied to CPU.
        """
        self._guard()
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise CheckpointError(f"tensor name {name!r}: expected a non-empty string other than '__metadata__'")
        if name in self._names:
            raise CheckpointError(f"tensor {name!r} was already added to {self.path}; each name must be unique")
        if self._planned is not None and self._device_streamable(name, tensor):
            try:
                self._submit_device(name, tensor)
            except BaseException:
                self.abort()
                raise
            return
        snapshot = self._snapshot(name, tensor, copy=copy)
        try:
            if self._planned is not None:
                if self._expected.get(name) == (snapshot.dtype, tuple(snapshot.shape)):
                    self._submit(name, snapshot)
                    return
                self._stop_planned()
            self._add_buffered(name, snapshot)
        except BaseException:
            self.abort()
            raise

    def _submit(self, name: str, snapshot: torch.Tensor) -> None:
        assert self._pool is not None and self._planned is not None
        self._names.add(name)
        self._order.append(name)
        self._total_size += snapshot.nbytes
        self._total_parameters += snapshot.numel()
        while len(self._futures) >= self.IN_FLIGHT:
            self._wait_oldest()
        self._futures.append((self._pool.submit(self._planned.write, name, snapshot), snapshot.nbytes))
        self._pending_bytes += snapshot.nbytes
        self._note_peak(0)

    def _device_streamable(self, name: str, tensor: torch.Tensor) -> bool:
        return (isinstance(tensor, torch.Tensor) and tensor.device.type not in ("cpu", "meta")
                and tensor.layout == torch.strided and tensor.numel() > 0
                and self._expected.get(name) == (tensor.dtype, tuple(tensor.shape)))

    def _submit_device(self, name: str, tensor: torch.Tensor) -> None:
        """A device tensor, planned: copied to host slot by slot, each slot written by the background thread
        while the next is transferred (host memory: the slots, whatever the tensor's size)."""
        from bridge.streaming.staging import download_chunks, shared_slots

        assert self._pool is not None and self._planned is not None
        self._names.add(name)
        self._order.append(name)
        self._total_size += tensor.nbytes
        self._total_parameters += tensor.numel()
        slots = shared_slots()
        planned = self._planned

        def write(start: int, slot: Any, n: int) -> None:
            try:
                planned.write_range(name, start, slot.view()[:n])
            finally:
                slots.release(slot)

        for start, slot, n in download_chunks(tensor.detach(), slots):
            try:
                future = self._pool.submit(write, start, slot, n)
            except BaseException:
                slots.release(slot)
                raise
            # A chunk cancelled by abort() never runs: its slot is given back there.
            future.add_done_callback(lambda f, slot=slot: slots.release(slot) if f.cancelled() else None)
            self._futures.append((future, 0))
            while self._futures and self._futures[0][0].done():
                self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, nbytes = self._futures.popleft()
        self._pending_bytes -= nbytes
        future.result()

    def _drain(self) -> None:
        while self._futures:
            self._wait_oldest()

    def _stop_planned(self) -> None:
        """Leave streaming mode: read back what was written, and re-add it in order, buffered."""
        self._drain()
        planned, self._planned = self._planned, None
        planned.abort()
        path = self._stage.staging / planned.files[0]
        tensors: list[tuple[str, torch.Tensor]] = []
        with open(path, "ab+") as handle:  # "ab+": the file exists only once a tensor was written
            for name in self._order:
                dtype, shape = self._expected[name]
                handle.seek(planned.offset(name))
                data = bytearray(math.prod(shape) * dtype.itemsize)
                handle.readinto(data)
                flat = torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
                tensors.append((name, flat.view(dtype).reshape(shape)))
        os.remove(path)
        log.debug("%s: tensors differ from the expected ones; buffering %d written tensors", self.path, len(tensors))
        self._names.clear()
        self._order.clear()
        self._total_size = self._total_parameters = 0
        for name, tensor in tensors:
            self._add_buffered(name, tensor)

    def _add_buffered(self, name: str, snapshot: torch.Tensor) -> None:
        self._names.add(name)
        self._total_size += snapshot.nbytes
        self._total_parameters += snapshot.numel()
        if snapshot.nbytes > self.max_shard_size:
            self._note_peak(snapshot.nbytes)
            self._write_shard({name: snapshot})
            return
        if self._pending_bytes + snapshot.nbytes > self.max_shard_size:
            self._flush()
        self._pending[name] = snapshot
        self._pending_bytes += snapshot.nbytes
        self._note_peak(0)

    def _note_peak(self, extra: int) -> None:
        self.peak_buffered_bytes = max(self.peak_buffered_bytes, self._pending_bytes + extra)

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending, self._pending_bytes = self._pending, {}, 0
            self._write_shard(pending)

    def _write_shard(self, tensors: dict[str, torch.Tensor]) -> None:
        number = len(self._shards) + 1
        path = self._stage.staging / f".shard-{number:05d}.partial"
        order = storage_order({name: tensor.dtype for name, tensor in tensors.items()})
        header = encode_header([(n, tensors[n].dtype, tuple(tensors[n].shape)) for n in order], _FORMAT_METADATA)
        try:
            with open(path, "wb") as handle:
                _write_bytes(handle, header)
                for name in order:
                    data = tensors[name]
                    if data.numel():
                        _write_bytes(handle, memoryview(data.reshape(-1).view(torch.uint8).numpy()))
                handle.flush()
                if self._durable:
                    os.fsync(handle.fileno())
        except OSError as exc:
            raise CheckpointError(
                f"writing shard {number} of {self.path} failed: {exc.strerror or exc}; nothing was written to "
                f"{self.path} (free disk space or choose another location, then export again)"
            ) from exc
        self._shards.append((path, order))
        log.debug("wrote shard %d (%d tensors) for %s", number, len(order), self.path)

    def close(self) -> Path:
        """Write the last shard, rename shards, write the index and companion files, then commit."""
        self._guard()
        try:
            if not self._names:
                raise CheckpointError(f"{self.path}: no tensors were added; nothing to export")
            if self._planned is not None:
                self._drain()
                if set(self._order) == set(self._expected):
                    self._planned.finish()
                    self._shards.append((self._stage.staging / self._planned.files[0], sorted(self._order)))
                    self._planned = None
                else:
                    self._stop_planned()
            self._shutdown()
            self._flush()
            self._finalize_files()
            return self._stage.commit()
        except BaseException:
            self.abort()
            raise

    def _finalize_files(self) -> None:
        staging, count = self._stage.staging, len(self._shards)
        for number, (temp, names) in enumerate(self._shards, start=1):
            final = shard_name(number, count)
            os.rename(temp, staging / final)
            self.weight_map.update(dict.fromkeys(names, final))
        if count > 1:
            text = encode_index(
                self.weight_map, total_size=self._total_size, total_parameters=self._total_parameters
            )
            with open(staging / INDEX_NAME, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                if self._durable:
                    os.fsync(handle.fileno())
        copy_companions(self._source, staging, config=self._config, durable=self._durable)
        self._verify(staging)

    def _verify(self, staging: Path) -> None:
        reader = HFCheckpointReader(staging)
        if set(reader.keys()) != self._names or reader.total_size != self._total_size:
            raise CheckpointError(f"{self.path}: the written checkpoint does not read back as written (writer bug)")

    def abort(self) -> None:
        """Discard everything written; an existing ``out_dir`` is left as it was."""
        for future, _ in self._futures:
            future.cancel()
        self._futures.clear()
        self._shutdown()
        if self._planned is not None:
            self._planned.abort()
            self._planned = None
        self._pending.clear()
        self._pending_bytes = 0
        if not self._stage.done:
            self._stage.abort()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
