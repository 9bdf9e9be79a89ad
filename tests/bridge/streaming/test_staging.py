"""Staging slots: the uploader packs file spans of many tensors into slot-sized jobs and fills every target
exactly; download_chunks cuts a tensor into slot-sized host chunks; a planned HF file written by byte
ranges, in any order, is the file written tensor by tensor.

On CPU the slots are ordinary memory and the targets CPU tensors (the packing, splitting and threading are
the same as on a GPU); ``tests/gpu/test_staging_gpu.py`` repeats the round trips with CUDA targets.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import CheckpointError
from bridge.parallel._common import bitwise_equal
from bridge.streaming.hf_out import PlannedHFWriter
from bridge.streaming.pieces import FileSpan, Pieces
from bridge.streaming.plan import HFTensorPlan
from bridge.streaming.staging import DeviceUploader, StagingSlots, column_region, download_chunks
from tests.strategies import random_bits


def _stored(tmp: Path, shapes: list[tuple[int, int]], seed: int) -> list[tuple[FileSpan, torch.Tensor]]:
    """Tensors written one after the other into one file (7 bytes of junk first), with their spans."""
    path, out, blob, at = tmp / f"blob{seed}", [], bytearray(b"j" * 7), 7
    for i, shape in enumerate(shapes):
        data = random_bits(shape, torch.bfloat16, seed * 100 + i)
        raw = data.view(torch.uint8).numpy().tobytes()
        out.append((FileSpan(path, at, torch.bfloat16, shape), data))
        blob += raw
        at += len(raw)
    path.write_bytes(bytes(blob))
    return out


def _pieces_for(span: FileSpan, data: torch.Tensor, how: str) -> tuple[Pieces, torch.Tensor]:
    rows, cols = data.shape
    if how == "whole":
        return Pieces.rows([span]), data
    if how == "columns":  # a row-parallel shard: one span per row
        lo, hi = cols // 3, cols
        return Pieces(torch.bfloat16, (rows, hi - lo), tuple(span.columns(lo, hi))), data[:, lo:hi]
    pad = random_bits((2, cols), torch.bfloat16, 7)  # rows of a span around an in-memory tensor
    half = rows // 2
    return Pieces.rows([span.rows(0, half), pad, span.rows(half, rows)]), torch.cat([data[:half], pad, data[half:]])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=st.lists(st.tuples(st.integers(1, 9), st.integers(1, 11)), min_size=1, max_size=7),
       hows=st.lists(st.sampled_from(["whole", "columns", "mixed"]), min_size=7, max_size=7),
       slot_bytes=st.integers(2, 97), count=st.integers(2, 4), readers=st.integers(1, 3),
       seed=st.integers(0, 50))
def test_uploads_fill_every_target_exactly(shapes, hows, slot_bytes, count, readers, seed, tmp_path) -> None:
    slot_bytes += slot_bytes % 2  # whole elements per slot do not matter; even sizes keep bf16 rows simple
    stored = _stored(tmp_path, shapes, seed)
    slots = StagingSlots(nbytes=slot_bytes, count=count, pin=False)
    wanted, targets = [], []
    with DeviceUploader(slots, readers=min(readers, count - 1)) as uploader:
        for (span, data), how in zip(stored, hows):
            pieces, want = _pieces_for(span, data, how)
            target = torch.full(pieces.shape, float("nan"), dtype=torch.bfloat16)
            uploader.add(pieces, target)
            wanted.append(want)
            targets.append(target)
    assert all(bitwise_equal(t, w) for t, w in zip(targets, wanted))
    all_pieces = [_pieces_for(s, d, h)[0] for (s, d), h in zip(stored, hows)]
    file_bytes = sum(p.nbytes for pieces in all_pieces for p in pieces.parts if isinstance(p, FileSpan))
    regions = [r for r in map(column_region, all_pieces) if r is not None and r[2] + r[3] <= slot_bytes]
    if not regions:  # every file byte went through a slot exactly once, packed into full slots
        assert uploader.bytes_staged == file_bytes
        assert uploader.jobs == -(-file_bytes // slot_bytes)
    else:  # column slices read whole rows: the other columns too, never more than their full rows
        full_rows = sum(r[2] * (p.shape[0] - 1) + r[3] for p in all_pieces if (r := column_region(p)))
        assert file_bytes < uploader.bytes_staged <= file_bytes + full_rows


def test_column_slices_are_recognised_only_when_evenly_strided(tmp_path: Path) -> None:
    (span, data), = _stored(tmp_path, [(5, 8)], 2)
    cols = Pieces(torch.bfloat16, (5, 3), tuple(span.columns(2, 5)))
    assert column_region(cols) == (span.path, span.offset + 4, 16, 6)
    assert column_region(Pieces.rows([span])) is None  # one span
    assert column_region(Pieces(torch.bfloat16, (5, 8), tuple(span.columns(0, 8)))) is None  # whole rows: contiguous
    uneven = list(span.columns(2, 5))
    uneven[3] = span.columns(1, 4)[3]
    assert column_region(Pieces(torch.bfloat16, (5, 3), tuple(uneven))) is None
    target = torch.empty(5, 3, dtype=torch.bfloat16)
    with DeviceUploader(StagingSlots(nbytes=40, count=2, pin=False)) as uploader:  # 3 rows (38 bytes) per block
        uploader.add(cols, target)
    assert bitwise_equal(target, data[:, 2:5]) and uploader.jobs == 2


def test_upload_casts_and_reports_truncated_files(tmp_path: Path) -> None:
    (span, data), = _stored(tmp_path, [(4, 6)], 1)
    as_float = torch.empty(4, 6)
    with DeviceUploader(StagingSlots(nbytes=16, count=2, pin=False)) as uploader:
        uploader.add(Pieces.rows([span]), as_float)  # another dtype: materialized, then cast by copy_
        with pytest.raises(CheckpointError, match="shape"):
            uploader.add(Pieces.rows([span]), torch.empty(6, 4, dtype=torch.bfloat16))
    assert bitwise_equal(as_float, data.float())
    beyond = FileSpan(span.path, span.offset + 8, torch.bfloat16, (4, 6))  # runs 8 bytes past the end
    uploader = DeviceUploader(StagingSlots(nbytes=16, count=2, pin=False))
    uploader.add(Pieces.rows([beyond]), torch.empty(4, 6, dtype=torch.bfloat16))
    with pytest.raises(CheckpointError, match="truncated"):
        uploader.close()


@given(shape=st.tuples(st.integers(0, 9), st.integers(1, 13)), slot_bytes=st.integers(1, 64))
@settings(max_examples=30, deadline=None)
def test_download_chunks_cover_the_tensor_in_order(shape, slot_bytes) -> None:
    data = random_bits(shape, torch.bfloat16, sum(shape))
    slots = StagingSlots(nbytes=slot_bytes, count=2, pin=False)
    got, expect_at = bytearray(), 0
    for start, slot, n in download_chunks(data.t(), slots):  # a non-contiguous view is made contiguous
        assert start == expect_at and 0 < n <= slot_bytes
        got += bytes(slot.view()[:n])
        expect_at += n
        slots.release(slot)
    assert bytes(got) == data.t().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def test_planned_file_written_by_ranges_in_any_order_is_the_same(tmp_path: Path) -> None:
    tensors = {f"t{i}": random_bits((3 + i, 5), torch.bfloat16, i) for i in range(4)}
    plans = [HFTensorPlan(n, t.dtype, tuple(t.shape), source=n) for n, t in tensors.items()]
    whole, ranged = tmp_path / "whole", tmp_path / "ranged"
    whole.mkdir()
    ranged.mkdir()
    a = PlannedHFWriter(whole, plans, max_shard_size=10**9, durable=False)
    for name, t in tensors.items():
        a.write(name, t)
    a.finish()
    b = PlannedHFWriter(ranged, plans, max_shard_size=10**9, durable=False)
    ranges = [(n, s, min(s + 7, t.nbytes)) for n, t in tensors.items() for s in range(0, t.nbytes, 7)]
    random.Random(3).shuffle(ranges)
    for name, lo, hi in ranges:
        b.write_range(name, lo, memoryview(tensors[name].view(torch.uint8).numpy().tobytes())[lo:hi])
    b.finish()
    assert (ranged / b.files[0]).read_bytes() == (whole / a.files[0]).read_bytes()
    with pytest.raises(CheckpointError, match="not planned"):
        b.write_range("t0", 0, memoryview(b"xx"))  # already complete
    c = PlannedHFWriter(tmp_path, plans[:1], max_shard_size=10**9, durable=False)
    with pytest.raises(CheckpointError, match="not planned"):
        c.write_range("t0", tensors["t0"].nbytes - 1, memoryview(b"xx"))  # past its end
    c.write_range("t0", 0, memoryview(b"xx"))
    with pytest.raises(CheckpointError, match="never written"):
        c.finish()  # 2 of its 30 bytes
    c.abort()
