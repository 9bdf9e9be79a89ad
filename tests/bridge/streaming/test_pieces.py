"""FileSpan / Pieces: spans of files read, slice and copy exactly; pieces add up, fill tensors, write anywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bridge.errors import CheckpointError
from bridge.parallel._safetensors import StreamingWriter
from bridge.streaming.pieces import FileSpan, Pieces, SourceFiles
from tests.strategies import random_bits


@pytest.fixture
def blob(tmp_path: Path) -> tuple[FileSpan, torch.Tensor]:
    """A (6, 5) bf16 tensor stored 13 bytes into a file, and its span."""
    data = random_bits((6, 5), torch.bfloat16, 0)
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 13 + data.view(torch.uint8).numpy().tobytes())
    return FileSpan(path, 13, torch.bfloat16, (6, 5)), data


def test_spans_read_and_slice_like_tensors(blob) -> None:
    span, data = blob
    assert span.nbytes == data.nbytes and span.numel() == 30
    assert torch.equal(span.read(), data)
    assert torch.equal(span.rows(2, 4).read(), data[2:4]) and span.rows(4, 99).shape == (2, 5)
    columns = span.columns(1, 3)
    assert len(columns) == 6 and all(c.shape == (1, 2) for c in columns)
    assert torch.equal(Pieces(torch.bfloat16, (6, 2), tuple(columns)).tensor(), data[:, 1:3])
    with pytest.raises(CheckpointError, match="truncated"):
        FileSpan(span.path, 13, torch.bfloat16, (7, 5)).read()


def test_pieces_must_add_up_and_fill_any_target(blob) -> None:
    span, data = blob
    extra = random_bits((2, 5), torch.bfloat16, 1)
    pieces = Pieces.rows([span.rows(0, 3), extra, span.rows(3, 6)])
    want = torch.cat([data[:3], extra, data[3:]])
    assert pieces.shape == (8, 5) and pieces.spans == 2 and torch.equal(pieces.tensor(), want)
    into = torch.empty(8, 5, dtype=torch.bfloat16)
    pieces.read_into(into)  # spans read straight into the target's memory
    assert torch.equal(into, want)
    as_float = torch.empty(8, 5)
    pieces.read_into(as_float)  # another dtype: read, then copy_ casts
    assert torch.equal(as_float, want.float()) and torch.equal(pieces.to(torch.float32).tensor(), want.float())
    with pytest.raises(CheckpointError, match="do not add up"):
        Pieces(torch.bfloat16, (9, 5), pieces.parts)
    with pytest.raises(CheckpointError, match="do not add up"):
        Pieces(torch.float32, (6, 5), (span,))


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_write_at_copies_spans_with_or_without_copy_file_range(blob, tmp_path, monkeypatch, kernel_copy) -> None:
    span, data = blob
    if not kernel_copy:
        def refuse(*args, **kwargs):
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", refuse)
    out = tmp_path / "out"
    fd = os.open(out, os.O_RDWR | os.O_CREAT)
    try:
        Pieces.rows([span.rows(1, 4), data[:1]]).write_at(fd, 3)
    finally:
        os.close(fd)
    assert out.read_bytes()[3:] == torch.cat([data[1:4], data[:1]]).view(torch.uint8).numpy().tobytes()


def test_source_files_open_each_file_once(blob) -> None:
    span, _ = blob
    with SourceFiles() as files:
        assert files.fd(span.path) == files.fd(span.path)


def test_streaming_writer_takes_pieces(blob, tmp_path) -> None:
    span, data = blob
    entries = [("a", torch.bfloat16, (6, 5)), ("b", torch.bfloat16, (2,))]
    with StreamingWriter(tmp_path / "f.safetensors", entries) as writer:
        writer.write_parts("a", Pieces.rows([span.rows(0, 2), span.rows(2, 6)]))
        with pytest.raises(CheckpointError, match="expected 'b'"):
            writer.write_parts("b", Pieces.of(torch.zeros(3, dtype=torch.bfloat16)))
        writer.write("b", torch.ones(2, dtype=torch.bfloat16))
    back = load_file(tmp_path / "f.safetensors")
    assert torch.equal(back["a"], data) and back["b"].tolist() == [1.0, 1.0]
