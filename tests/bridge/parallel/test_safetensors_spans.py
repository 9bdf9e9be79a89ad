"""FileSpan / copy_span / StreamingWriter.write_rows: spans of a file read, slice and copy exactly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bridge.errors import CheckpointError
from bridge.parallel._safetensors import FileSpan, StreamingWriter, copy_span
from tests.strategies import random_bits


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, torch.Tensor]:
    data = random_bits((6, 5), torch.bfloat16, 0)
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 13 + data.view(torch.uint8).numpy().tobytes())
    return path, data


def test_spans_read_and_slice_like_tensors(blob) -> None:
    path, data = blob
    span = FileSpan(path, 13, torch.bfloat16, (6, 5))
    assert span.nbytes == data.nbytes and span.numel() == 30 and span.dim() == 2
    assert torch.equal(span.read(), data)
    assert torch.equal(span.rows(2, 4).read(), data[2:4]) and span.rows(4, 99).shape == (2, 5)
    target = torch.empty(2, 5, dtype=torch.bfloat16)
    span.rows(1, 3).read_into(target)
    assert torch.equal(target, data[1:3])
    with pytest.raises(CheckpointError, match="cannot read"):
        span.read_into(torch.empty(6, 5))
    with pytest.raises(CheckpointError, match="truncated"):
        FileSpan(path, 13, torch.bfloat16, (7, 5)).read()


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_copy_span_copies_the_bytes_with_or_without_copy_file_range(blob, tmp_path, monkeypatch, kernel_copy) -> None:
    path, data = blob
    if not kernel_copy:
        def refuse(*args, **kwargs):
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", refuse)
    out = tmp_path / "out"
    fd = os.open(out, os.O_RDWR | os.O_CREAT)
    try:
        copy_span(FileSpan(path, 13, torch.bfloat16, (6, 5)).rows(1, 4), fd, 3)
    finally:
        os.close(fd)
    assert out.read_bytes()[3:] == data[1:4].view(torch.uint8).numpy().tobytes()


def test_write_rows_mixes_spans_and_tensors_into_one_entry(blob, tmp_path) -> None:
    path, data = blob
    span = FileSpan(path, 13, torch.bfloat16, (6, 5))
    extra = random_bits((3, 5), torch.bfloat16, 1)
    with StreamingWriter(tmp_path / "f.safetensors", [("a", torch.bfloat16, (9, 5)), ("b", torch.bfloat16, (2,))]) as w:
        w.write_rows("a", [span.rows(0, 2), extra, span.rows(2, 6)])
        with pytest.raises(CheckpointError, match="row blocks"):
            w.write_rows("b", [torch.zeros(3, dtype=torch.bfloat16)])
        w.write_rows("b", [torch.zeros(1, dtype=torch.bfloat16), torch.ones(1, dtype=torch.bfloat16)])
    back = load_file(tmp_path / "f.safetensors")
    assert torch.equal(back["a"], torch.cat([data[:2], extra, data[2:]]))
    assert back["b"].tolist() == [0.0, 1.0]
