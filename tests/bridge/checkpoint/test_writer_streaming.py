"""``HFCheckpointWriter(expected=...)``: tensors written while later ones arrive, same bytes as buffered."""

from __future__ import annotations

import errno
import os
import random
import threading
from pathlib import Path

import pytest
import torch

from bridge.checkpoint import HFCheckpointWriter
from bridge.errors import CheckpointError
from tests.bridge.checkpoint.test_writer import DTYPES, _tensor

SHAPES = [(3, 5), (), (0, 4), (7,), (2, 3, 4), (1,), (16, 16)]


def _tensors(count: int, seed: int) -> dict[str, torch.Tensor]:
    rng = random.Random(seed)
    return {f"layers.{i}.w": _tensor(rng.choice(DTYPES), rng.choice(SHAPES), seed * 1000 + i) for i in range(count)}


def _expected(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    return {n: (t.dtype, tuple(t.shape)) for n, t in tensors.items()}


def _write(out: Path, tensors: dict[str, torch.Tensor], order: list[str], **kwargs) -> HFCheckpointWriter:
    with HFCheckpointWriter(out, durable=False, **kwargs) as writer:
        for name in order:
            writer.add(name, tensors[name])
    return writer


def _files(path: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


@pytest.mark.parametrize("seed", range(4))
def test_streamed_checkpoint_is_byte_identical_to_the_buffered_one(tmp_path: Path, seed: int) -> None:
    tensors = _tensors(12, seed)
    order = list(tensors)
    random.Random(seed).shuffle(order)  # arrival order differs from the file's storage order
    buffered = _write(tmp_path / "buffered", tensors, order)
    streamed = _write(tmp_path / "streamed", tensors, order, expected=_expected(tensors))
    assert not buffered.streaming and streamed.weight_map == buffered.weight_map
    assert _files(tmp_path / "streamed") == _files(tmp_path / "buffered")


def test_tensors_are_written_while_later_ones_arrive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bridge.streaming.hf_out as hf_out

    tensors = {f"t{i}": torch.full((256,), float(i)) for i in range(10)}  # 1 KiB each
    main, written_by, real = threading.get_ident(), [], os.pwrite
    monkeypatch.setattr(hf_out.os, "pwrite", lambda *a: (written_by.append(threading.get_ident()), real(*a))[1])
    with HFCheckpointWriter(tmp_path / "out", durable=False, expected=_expected(tensors)) as writer:
        for i, (name, tensor) in enumerate(tensors.items()):
            writer.add(name, tensor, copy=False)
            if i == 5:
                assert writer.streaming and written_by  # earlier tensors already reached the file
        assert writer.peak_buffered_bytes <= HFCheckpointWriter.IN_FLIGHT * 1024  # not the whole shard
    assert main not in written_by  # the caller's thread only produced tensors


@pytest.mark.parametrize("change", ["shape", "dtype", "extra", "missing"])
def test_tensors_other_than_expected_fall_back_to_the_same_bytes(tmp_path: Path, change: str) -> None:
    tensors = _tensors(10, 7)
    expected = _expected(tensors)
    if change == "shape":
        expected["layers.6.w"] = (expected["layers.6.w"][0], (99,))
    elif change == "dtype":
        expected["layers.6.w"] = (torch.complex64, expected["layers.6.w"][1])
    elif change == "extra":
        tensors["zz.extra"] = torch.arange(50, dtype=torch.float32)
    else:
        expected["layers.99.w"] = (torch.float32, (4,))
    shard = sum(t.nbytes for t in tensors.values()) - 8  # the extra tensor (if any) opens a second shard
    if change != "extra":
        shard = 10**6
    _write(tmp_path / "buffered", tensors, list(tensors), max_shard_size=shard)
    writer = _write(tmp_path / "streamed", tensors, list(tensors), max_shard_size=shard, expected=expected)
    assert not writer.streaming
    assert _files(tmp_path / "streamed") == _files(tmp_path / "buffered")


def test_expected_tensors_beyond_one_shard_are_buffered(tmp_path: Path) -> None:
    tensors = _tensors(10, 3)
    shard = max(t.nbytes for t in tensors.values()) + 1
    writer = HFCheckpointWriter(tmp_path / "out", durable=False, max_shard_size=shard, expected=_expected(tensors))
    assert not writer.streaming  # the sharding would depend on the order of arrival
    writer.abort()


def test_a_failed_background_write_aborts_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bridge.streaming.hf_out as hf_out

    tensors = {f"t{i}": torch.ones(64) for i in range(8)}

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hf_out.os, "pwrite", full)
    with pytest.raises(CheckpointError, match="No space left"):
        _write(tmp_path / "out", tensors, list(tensors), expected=_expected(tensors))
    assert list(tmp_path.iterdir()) == []
