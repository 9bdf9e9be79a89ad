"""FileSpan / Pieces: spans of files read, slice and copy exactly; pieces add up, fill tensors, write anywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bridge.errors import CheckpointError
from bridge.parallel._common import bitwise_equal
from bridge.parallel._safetensors import StreamingWriter
from bridge.streaming.pieces import ColumnJoin, FileSpan, Pieces, Scratch, SourceFiles
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
    assert bitwise_equal(span.read(), data)
    assert bitwise_equal(span.rows(2, 4).read(), data[2:4]) and span.rows(4, 99).shape == (2, 5)
    columns = span.columns(1, 3)
    assert len(columns) == 6 and all(c.shape == (1, 2) for c in columns)
    assert bitwise_equal(Pieces(torch.bfloat16, (6, 2), tuple(columns)).tensor(), data[:, 1:3])
    with pytest.raises(CheckpointError, match="truncated"):
        FileSpan(span.path, 13, torch.bfloat16, (7, 5)).read()


def test_pieces_must_add_up_and_fill_any_target(blob) -> None:
    span, data = blob
    extra = random_bits((2, 5), torch.bfloat16, 1)
    pieces = Pieces.rows([span.rows(0, 3), extra, span.rows(3, 6)])
    want = torch.cat([data[:3], extra, data[3:]])
    assert pieces.shape == (8, 5) and pieces.spans == 2 and bitwise_equal(pieces.tensor(), want)
    into = torch.empty(8, 5, dtype=torch.bfloat16)
    pieces.read_into(into)  # spans read straight into the target's memory
    assert bitwise_equal(into, want)
    as_float = torch.empty(8, 5)
    pieces.read_into(as_float)  # another dtype: read, then copy_ casts
    assert bitwise_equal(as_float, want.float()) and bitwise_equal(pieces.to(torch.float32).tensor(), want.float())
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
    assert bitwise_equal(back["a"], data) and back["b"].tolist() == [1.0, 1.0]


def test_column_slices_and_joins_are_written_row_by_row_without_a_copy(tmp_path) -> None:
    a, b = torch.randn(700, 6), torch.randn(700, 2)
    join = ColumnJoin((a, b))
    assert join.shape == (700, 8) and bitwise_equal(join.tensor(), torch.cat([a, b], dim=1))
    pieces = Pieces.of(a[:, 1:3])  # a column slice: rows of 8 bytes, 24 apart
    out = tmp_path / "out"
    fd = os.open(out, os.O_RDWR | os.O_CREAT)
    try:
        Pieces(torch.float32, (700, 8), (join,)).write_at(fd, 0)  # 1400 row views: more than one pwritev batch
        pieces.write_at(fd, join.nbytes)
    finally:
        os.close(fd)
    written = torch.frombuffer(bytearray(out.read_bytes()), dtype=torch.float32)
    assert bitwise_equal(written[:5600].reshape(700, 8), torch.cat([a, b], dim=1))
    assert bitwise_equal(written[5600:].reshape(700, 2), a[:, 1:3])


def test_short_writes_are_resumed(tmp_path, monkeypatch) -> None:
    """pwritev may write less than asked (signals, quotas); the rest follows, mid-view included."""
    real = os.pwritev

    def short(fd, buffers, offset):
        budget, taken = 37, []
        for b in buffers:
            if budget <= 0:
                break
            taken.append(b[:budget])
            budget -= len(taken[-1])
        return real(fd, taken, offset)

    monkeypatch.setattr(os, "pwritev", short)
    a, b = torch.randn(50, 3), torch.randn(50, 5)
    out = tmp_path / "out"
    fd = os.open(out, os.O_RDWR | os.O_CREAT)
    try:
        Pieces(torch.float32, (50, 8), (ColumnJoin((a, b)),)).write_at(fd, 0)
    finally:
        os.close(fd)
    written = torch.frombuffer(bytearray(out.read_bytes()), dtype=torch.float32).reshape(50, 8)
    assert torch.equal(written, torch.cat([a, b], dim=1))


def test_scratch_reads_spans_side_by_side_and_reuses_its_buffer(blob, tmp_path) -> None:
    span, data = blob
    other = torch.randn(3, 3, dtype=torch.float64)
    path = tmp_path / "f64"
    path.write_bytes(other.numpy().tobytes())
    scratch = Scratch()
    odd, wide = scratch.read([span.rows(0, 1), FileSpan(path, 0, torch.float64, (3, 3))])  # 10 bytes, then 8-aligned
    assert bitwise_equal(odd, data[:1]) and torch.equal(wide, other)
    again = scratch.read([FileSpan(path, 0, torch.float64, (3, 3))])[0]
    assert torch.equal(again, other) and again.untyped_storage().data_ptr() == wide.untyped_storage().data_ptr()


def test_mapped_scratch_reads_what_the_buffer_reads_and_unmaps_with_its_tensors(blob) -> None:
    import gc

    def maps_of(path: Path) -> int:
        return Path("/proc/self/maps").read_text().count(str(path))

    span, data = blob
    spans = [span.rows(1, 4), span.rows(0, 0), FileSpan(span.path, span.offset, torch.uint8, (3,))]
    buffered, mapped = Scratch().read(spans), Scratch(mapped=True).read(spans)
    assert all(bitwise_equal(a, b) for a, b in zip(buffered, mapped)) and bitwise_equal(mapped[0], data[1:4])
    assert maps_of(span.path) == 2  # the two non-empty spans, each mapped while its tensor lives
    del mapped
    gc.collect()
    assert maps_of(span.path) == 0
