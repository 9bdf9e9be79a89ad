"""``HFCheckpointReader``: a validated, lazy view of a Hugging Face safetensors checkpoint directory.

Construction validates everything that can be validated without reading tensor data (the safetensors
philosophy): file discovery, the index, path safety, every shard header, and the agreement between the
index and the headers. Only then may :meth:`HFCheckpointReader.get` read the bytes of one tensor, with a
plain positioned read into a fresh tensor (no file stays open, no memory map outlives the call).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from bridge._logging import get_logger
from bridge.checkpoint.checks import WeightReport, compare_weights
from bridge.checkpoint.format import Header, TensorInfo, read_header
from bridge.checkpoint.index import WeightLayout, discover_layout
from bridge.checkpoint.paths import CheckpointDir
from bridge.errors import CheckpointError, WeightMismatchError

__all__ = ["HFCheckpointReader", "MissingTensorError"]

log = get_logger("checkpoint.reader")

_MAX_LISTED = 10


class MissingTensorError(CheckpointError, KeyError):
    """A tensor name that the checkpoint does not hold was requested."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class _Shard:
    name: str
    real: Path
    identity: tuple[int, int, int, int]
    header: Header


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" (and {len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


class HFCheckpointReader:
    """Read tensors of the checkpoint in ``path`` lazily, after validating the whole directory.

    Raises:
        CheckpointError: the directory is not a safe, consistent safetensors checkpoint. The message names
            the file (and tensor) at fault.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._root = CheckpointDir.resolve(path)
        self._layout: WeightLayout = discover_layout(self._root)
        self._shards = self._load_shards()
        self._owner = self._assign_owners()
        log.debug("validated %s: %d tensors in %d files", self._root.path, len(self._owner), len(self._shards))

    # ----------------------------------------------------------------- validation
    def _load_shards(self) -> dict[str, _Shard]:
        source = self._layout.index_file or "the weight file search"
        context = str(self._root.path / source) if self._layout.index_file else "locating weights"
        reals = {f: self._root.member(f, context=context) for f in self._layout.files}
        missing = sorted(f for f, real in reals.items() if real is None)
        if missing:
            raise CheckpointError(
                f"{self._root.path}: {source} references {len(missing)} missing shard file(s): {_listing(missing)}; "
                "the download or copy is incomplete, fetch the missing files"
            )
        shards: dict[str, _Shard] = {}
        for name, real in sorted(reals.items()):
            assert real is not None
            with open(real, "rb") as handle:
                stat = os.fstat(handle.fileno())
                header = read_header(self._root.path / name, handle, stat.st_size)
            shards[name] = _Shard(name=name, real=real, identity=_identity(stat), header=header)
        return shards

    def _assign_owners(self) -> dict[str, str]:
        owner: dict[str, str] = {}
        for file, shard in self._shards.items():
            for tensor in sorted(shard.header.tensors):
                if tensor in owner:
                    raise CheckpointError(
                        f"{self._root.path}: tensor {tensor!r} is stored twice, in {owner[tensor]} and in {file}; "
                        "a tensor must live in exactly one shard. Re-export the checkpoint"
                    )
                owner[tensor] = file
        weight_map = self._layout.weight_map
        if weight_map is None:
            return owner
        index = self._root.path / (self._layout.index_file or "")
        for tensor, file in sorted(owner.items()):
            listed = weight_map.get(tensor)
            if listed is None:
                raise CheckpointError(
                    f"{index}: tensor {tensor!r} is stored in {file} but missing from weight_map; fix the index"
                )
            if listed != file:
                raise CheckpointError(
                    f"{index}: weight_map puts tensor {tensor!r} in {listed}, but it is stored in {file}; fix the index"
                )
        absent = sorted(t for t in weight_map if t not in owner)
        if absent:
            raise CheckpointError(
                f"{index}: weight_map lists {len(absent)} tensor(s) that no shard holds: "
                + _listing([f"{t!r} (in {weight_map[t]})" for t in absent])
            )
        return owner

    # ----------------------------------------------------------------- metadata access
    @property
    def path(self) -> Path:
        """The resolved checkpoint directory."""
        return self._root.path

    @property
    def metadata(self) -> dict[str, Any]:
        """The index's ``metadata`` object (empty for a single-file checkpoint)."""
        return dict(self._layout.metadata)

    def file_metadata(self, file: str) -> dict[str, str]:
        """The ``__metadata__`` of one shard file (e.g. ``{"format": "pt"}``)."""
        return dict(self._shard(file).header.metadata)

    def files(self) -> list[str]:
        """Sorted names of the weight files, relative to :attr:`path`."""
        return sorted(self._shards)

    def keys(self) -> list[str]:
        """Sorted tensor names."""
        return sorted(self._owner)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._owner)

    def __contains__(self, name: object) -> bool:
        return name in self._owner

    def __repr__(self) -> str:
        return f"HFCheckpointReader({str(self.path)!r}, tensors={len(self)}, files={len(self._shards)})"

    def file_of(self, name: str) -> str:
        """The shard file holding tensor ``name``."""
        return self._info(name)[0].name

    def shape(self, name: str) -> tuple[int, ...]:
        return self._info(name)[1].shape

    def dtype(self, name: str) -> torch.dtype:
        return self._info(name)[1].torch_dtype

    def nbytes(self, name: str) -> int:
        return self._info(name)[1].nbytes

    @property
    def total_size(self) -> int:
        """Bytes of tensor data over all files (what the index's ``total_size`` should say)."""
        return sum(self._shards[f].header.tensors[t].nbytes for t, f in self._owner.items())

    def config(self) -> dict[str, Any]:
        """The parsed ``config.json``."""
        config = self._root.load_json("config.json")
        if not isinstance(config, dict):
            raise CheckpointError(f"{self.path / 'config.json'}: expected a JSON object, found {type(config).__name__}")
        return config

    def _shard(self, file: str) -> _Shard:
        try:
            return self._shards[file]
        except KeyError:
            raise CheckpointError(f"{self.path}: no weight file {file!r}; files are {self.files()}") from None

    def _info(self, name: str) -> tuple[_Shard, TensorInfo]:
        file = self._owner.get(name)
        if file is None:
            close = difflib.get_close_matches(str(name), self._owner, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise MissingTensorError(f"{self.path}: no tensor {name!r} in the checkpoint{hint}")
        shard = self._shards[file]
        return shard, shard.header.tensors[name]

    # ----------------------------------------------------------------- tensor data
    def _open(self, shard: _Shard) -> BinaryIO:
        handle = open(shard.real, "rb")
        if _identity(os.fstat(handle.fileno())) != shard.identity:
            handle.close()
            raise CheckpointError(
                f"{self.path / shard.name} changed on disk after it was validated; open a new HFCheckpointReader"
            )
        return handle

    def verified_path(self, file: str) -> Path:
        """The real path of weight file ``file``, checked unchanged since validation (for memory-mapped reads)."""
        self._open(self._shard(file)).close()
        return self._shard(file).real

    def _read(self, handle: BinaryIO, shard: _Shard, info: TensorInfo) -> torch.Tensor:
        raw = torch.empty(info.nbytes, dtype=torch.uint8)
        view = memoryview(raw.numpy())
        handle.seek(shard.header.data_start + info.begin)
        done = 0
        while done < info.nbytes:
            count = handle.readinto(view[done:])
            if not count:
                raise CheckpointError(
                    f"{self.path / shard.name}: tensor {info.name!r} ends early at byte {done} of {info.nbytes}; "
                    "the file was truncated while being read"
                )
            done += count
        return raw.view(info.torch_dtype).reshape(info.shape)

    def get(self, name: str) -> torch.Tensor:
        """Read tensor ``name`` (only its bytes) into a new CPU tensor that owns its memory."""
        shard, info = self._info(name)
        with self._open(shard) as handle:
            return self._read(handle, shard, info)

    def get_many(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Read several tensors, opening each file once; the result follows the order of ``names``."""
        wanted = list(dict.fromkeys(names))
        located = {name: self._info(name) for name in wanted}
        out: dict[str, torch.Tensor] = {}
        for file in sorted({shard.name for shard, _ in located.values()}):
            shard = self._shards[file]
            mine = sorted((info for s, info in located.values() if s.name == file), key=lambda i: i.begin)
            with self._open(shard) as handle:
                for info in mine:
                    out[info.name] = self._read(handle, shard, info)
        return {name: out[name] for name in wanted}

    # ----------------------------------------------------------------- checks
    def compare(
        self, expected: Mapping[str, tuple[Sequence[int], torch.dtype | None]], *, check_dtype: bool = False
    ) -> WeightReport:
        """Missing / unexpected / wrongly shaped (and, if ``check_dtype``, wrongly typed) tensors."""
        found = {name: (self.shape(name), self.dtype(name)) for name in self._owner}
        return compare_weights(found, expected, check_dtype=check_dtype)

    def check_against(
        self, expected: Mapping[str, tuple[Sequence[int], torch.dtype | None]], *, check_dtype: bool = False
    ) -> None:
        """Raise :class:`WeightMismatchError` listing every disagreement with ``expected`` in one message.

        ``expected`` maps tensor names to ``(shape, dtype)``; a ``None`` dtype is never checked.
        """
        report = self.compare(expected, check_dtype=check_dtype)
        if not report.ok:
            raise WeightMismatchError(report.describe(f"checkpoint {self.path}"))
