"""``.distcp`` records read as file spans: a layer of a stacked key, chunks tiled in memory, damage refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bridge.errors import CheckpointError
from bridge.megatron_ckpt.offline import _DATA_FILE, _append, _Index
from bridge.megatron_ckpt.records import DistcpTensors, record_span
from bridge.streaming.pieces import FileSpan

STACKED = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
EMBED = (torch.arange(5 * 3) * 7 % 11).to(torch.bfloat16).reshape(5, 3)


def _write(directory: Path, chunks: dict[str, list[tuple[tuple[int, ...], torch.Tensor]]],
           sizes: dict[str, tuple[int, ...]]) -> DistcpTensors:
    index = _Index()
    with open(directory / _DATA_FILE, "wb") as handle:
        handle.write(b"some leading bytes")
        for key, parts in chunks.items():
            entry = index.tensors.setdefault(key, {"dtype": parts[0][1].dtype, "size": sizes[key], "chunks": []})
            for offsets, tensor in parts:
                _append(handle, index, key, offsets, tensor.clone())
                entry["chunks"].append((offsets, tuple(tensor.shape)))
    return DistcpTensors(directory, index.metadata())


def test_a_layer_held_by_one_chunk_is_a_span_and_split_chunks_are_assembled(tmp_path: Path) -> None:
    tensors = _write(tmp_path, {
        "decoder.layers.w": [((0, 0, 0), STACKED[0:1]),  # layer 0: one chunk
                             ((1, 0, 0), STACKED[1:2, :, :3]), ((1, 0, 3), STACKED[1:2, :, 3:])],  # layer 1: split
        "embedding": [((3, 0), EMBED[3:]), ((0, 0), EMBED[:3])],  # rows, stored out of order
    }, {"decoder.layers.w": (2, 4, 6), "embedding": (5, 3)})
    assert tensors.keys() == ["decoder.layers.w", "embedding"] and tensors.size("embedding") == (5, 3)
    first = tensors.part("decoder.layers.w", 0)
    assert isinstance(first, FileSpan) and torch.equal(first.read(), STACKED[0])
    assert torch.equal(tensors.part("decoder.layers.w", 1), STACKED[1])
    assert torch.equal(tensors.part("embedding"), EMBED) and tensors.part("embedding").dtype == torch.bfloat16
    with pytest.raises(CheckpointError, match="has no layer 2"):
        tensors.part("decoder.layers.w", 2)


def test_a_record_holding_several_layers_gives_each_layer_as_a_span(tmp_path: Path) -> None:
    tensors = _write(tmp_path, {"decoder.layers.w": [((0, 0, 0), STACKED)]}, {"decoder.layers.w": (2, 4, 6)})
    for layer in (0, 1):
        part = tensors.part("decoder.layers.w", layer)
        assert isinstance(part, FileSpan) and torch.equal(part.read(), STACKED[layer])


@pytest.mark.parametrize("chunks", [[((0, 0), EMBED[:3])],  # a gap
                                    [((0, 0), EMBED[:3]), ((2, 0), EMBED[2:])]],  # an overlap (and a row outside)
                         ids=["gap", "overlap"])
def test_chunks_that_do_not_tile_the_tensor_are_refused(tmp_path: Path, chunks) -> None:
    tensors = _write(tmp_path, {"embedding": chunks}, {"embedding": (5, 3)})
    with pytest.raises(CheckpointError, match=r"do not tile \[5, 3\] exactly"):
        tensors.part("embedding")


def test_a_damaged_record_is_a_checkpoint_error(tmp_path: Path) -> None:
    tensors = _write(tmp_path, {"embedding": [((0, 0), EMBED)]}, {"embedding": (5, 3)})
    data = (tmp_path / _DATA_FILE).read_bytes()
    (tmp_path / _DATA_FILE).write_bytes(data[:18] + b"\0" * 64 + data[82:])  # the record's zip header
    with pytest.raises(CheckpointError, match="damaged"):
        tensors.part("embedding")
    with pytest.raises(CheckpointError, match="damaged"):
        record_span(tmp_path / _DATA_FILE, 18, len(data) - 18)


def test_a_zero_dimensional_tensor_is_found_under_either_offset_spelling(tmp_path: Path) -> None:
    tensors = _write(tmp_path, {"scale": [((), torch.tensor(2.5))]}, {"scale": ()})  # stored under offset None
    part = tensors.part("scale")
    assert isinstance(part, FileSpan) and part.shape == () and part.read().item() == 2.5
